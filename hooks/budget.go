package hooks

import (
	"cmp"
	"context"
	"errors"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
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

// DefaultBudget, DefaultBudgetRate and DefaultBudgetWait size the agent's budget for
// unauthenticated bodies.
const (
	DefaultBudget     = 64 << 20
	DefaultBudgetRate = 32 << 20 // bytes per second, past FreeBody, all bodies together
	DefaultBudgetWait = time.Second
)

// budgetBurst is how many bytes past FreeBody may be read at once before the rate applies:
// a real push of a few MB is not slowed down when nobody else is sending.
const budgetBurst = 8 << 20

// Budget bounds the memory that bodies not yet authenticated hold, summed over every
// delivery being read at once, and the rate at which they are read. Without it, N senders
// of 25 MiB unsigned bodies would make the agent hold N×25 MiB before refusing each, and
// spend its CPU hashing them while real pushes wait. Bytes beyond FreeBody are drawn in
// chunks as they arrive, at most rate bytes a second in all; a delivery that cannot draw
// its next chunk within the wait is refused with 429, and gives back what it held. A Budget
// is safe for concurrent use.
type Budget struct {
	sem   *semaphore.Weighted
	size  int64
	limit *rate.Limiter // nil: no rate
	wait  time.Duration
}

// NewBudget returns a budget of size bytes (at least one 64 KiB chunk) read at most
// bytesPerSec (0: as fast as they come); a delivery waits at most wait for a chunk.
func NewBudget(size, bytesPerSec int64, wait time.Duration) *Budget {
	size = max(size, budgetChunk)
	b := &Budget{sem: semaphore.NewWeighted(size), size: size, wait: wait}
	if bytesPerSec > 0 {
		b.limit = rate.NewLimiter(rate.Limit(bytesPerSec), budgetBurst)
	}
	return b
}

// Why acquire fails, besides ctx ending.
var (
	errBudgetFull = errors.New("no room in the budget")
	errBudgetRate = errors.New("over the budget's rate")
)

// acquire draws n bytes (at most budgetChunk), waiting at most b.wait for room and for
// the rate. It fails with ctx's error when ctx ended, else with errBudgetFull or
// errBudgetRate. A nil budget always succeeds.
func (b *Budget) acquire(ctx context.Context, n int64) error {
	if b == nil {
		return nil
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if !b.sem.TryAcquire(n) {
		if err := b.sem.Acquire(ctx, n); err != nil {
			return cmp.Or(parent.Err(), errBudgetFull)
		}
	}
	if b.limit != nil {
		// WaitN fails at once when the wait would outlast ctx's deadline.
		if err := b.limit.WaitN(ctx, int(n)); err != nil {
			b.sem.Release(n)
			return cmp.Or(parent.Err(), errBudgetRate)
		}
	}
	return nil
}

// release gives back n bytes drawn with acquire.
func (b *Budget) release(n int64) {
	if b != nil && n > 0 {
		b.sem.Release(n)
	}
}
