package state

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit runs write transactions so that callers arriving while one commits share the
// next one: one fsync for all of them, and no timer to wait for (bbolt's Batch waits up to
// 10 ms for company, which caps a handful of concurrent webhook senders at a few hundred
// deliveries a second). The first caller to find no commit under way leads: it commits
// batches until none is waiting.
type groupCommit struct {
	db      *bolt.DB
	mu      sync.Mutex
	queue   []*commitReq
	leading bool
}

type commitReq struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// Update runs fn in a write transaction, possibly shared with others. fn may run more than
// once (alone, after a shared transaction failed because of another caller's fn), so it must
// set its results from scratch each time.
func (g *groupCommit) Update(fn func(*bolt.Tx) error) error {
	r := &commitReq{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if g.leading {
		g.mu.Unlock()
		return <-r.done
	}
	g.leading = true
	for len(g.queue) > 0 {
		batch := g.queue
		g.queue = nil
		g.mu.Unlock()
		g.commit(batch)
		g.mu.Lock()
	}
	g.leading = false
	g.mu.Unlock()
	return <-r.done
}

func (g *groupCommit) commit(batch []*commitReq) {
	if len(batch) == 1 {
		batch[0].done <- g.db.Update(batch[0].fn)
		return
	}
	err := g.db.Update(func(tx *bolt.Tx) error {
		for _, r := range batch {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		for _, r := range batch {
			r.done <- nil
		}
		return
	}
	// One caller's failure must not fail the others: each runs again on its own.
	for _, r := range batch {
		r.done <- g.db.Update(r.fn)
	}
}
