package hooks

import (
	"context"
	"time"

	"golang.org/x/sync/semaphore"
)

// FreeBody is how much of each body Read holds without drawing on a [Budget]: as much as
// a request's headers may take (the agent's MaxHeaderBytes), so a delivery costs no more
// than its headers before it needs the budget. Every real GitHub payload in the corpus fits
// (the largest is 54 KiB), so a real push never waits for the budget, whatever bodies an
// attacker holds.
const FreeBody = 64 << 10

// budgetChunk is the granule in which a body's bytes beyond FreeBody are drawn from the
// budget, and the size of the buffers they are read into.
const budgetChunk = 64 << 10

// DefaultBudget and DefaultBudgetWait size the agent's budget for unauthenticated bodies.
const (
	DefaultBudget     = 64 << 20
	DefaultBudgetWait = time.Second
)

// Budget bounds the memory that bodies not yet authenticated hold, summed over every
// delivery being read at once. Without it, N senders of 25 MiB unsigned bodies would make
// the agent hold N×25 MiB before refusing each. Bytes beyond FreeBody are drawn in chunks as
// they arrive; a delivery that cannot draw its next chunk within the wait is refused with
// 429, and gives back what it held. A Budget is safe for concurrent use.
type Budget struct {
	sem  *semaphore.Weighted
	size int64
	wait time.Duration
}

// NewBudget returns a budget of size bytes (at least one 64 KiB chunk); a delivery waits
// at most wait for a chunk.
func NewBudget(size int64, wait time.Duration) *Budget {
	size = max(size, budgetChunk)
	return &Budget{sem: semaphore.NewWeighted(size), size: size, wait: wait}
}

// acquire draws n bytes, waiting at most b.wait (or until ctx ends). A nil budget always
// succeeds.
func (b *Budget) acquire(ctx context.Context, n int64) error {
	if b == nil {
		return nil
	}
	if b.sem.TryAcquire(n) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	return b.sem.Acquire(ctx, n)
}

// release gives back n bytes drawn with acquire.
func (b *Budget) release(n int64) {
	if b != nil && n > 0 {
		b.sem.Release(n)
	}
}
