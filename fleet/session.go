package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Session is one agent's presence in the fleet: a lease kept alive while Run runs, to which
// the host's registry entries, wants and slot are bound. When the agent dies, they expire
// with the lease.
type Session struct {
	// OnError, if not nil, hears of a lease that could not be granted or kept alive and of
	// an entry that could not be written again on a new lease; at most once per outage.
	OnError func(error)

	s    *Store
	host string

	mu      sync.Mutex
	lease   clientv3.LeaseID // 0 while there is none
	changed chan struct{}    // closed when the lease changes
	entries map[string]*Host // env → the last entry published
}

// Session returns the session of host; Run makes it live.
func (s *Store) Session(host string) (*Session, error) {
	if err := checkNames("host", host); err != nil {
		return nil, err
	}
	return &Session{s: s, host: host, changed: make(chan struct{}), entries: map[string]*Host{}}, nil
}

// Host is the session's host name.
func (se *Session) Host() string { return se.host }

// current returns the lease (0: none yet) and a channel closed when it changes.
func (se *Session) current() (clientv3.LeaseID, <-chan struct{}) {
	se.mu.Lock()
	defer se.mu.Unlock()
	return se.lease, se.changed
}

func (se *Session) setLease(id clientv3.LeaseID) {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.lease != id {
		se.lease = id
		close(se.changed)
		se.changed = make(chan struct{})
	}
}

// waitLease returns the lease, waiting until there is one or ctx ends.
func (se *Session) waitLease(ctx context.Context) (clientv3.LeaseID, error) {
	for {
		id, changed := se.current()
		if id != 0 {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-changed:
		}
	}
}

// Run grants the session's lease and keeps it alive, one keepalive every third of the TTL,
// until ctx ends; then it revokes the lease, so that the host's keys go at once. A lease
// etcd no longer knows (after an outage longer than the TTL) is replaced by a new one, on
// which the registry entries are written again. Run returns nil when ctx ends.
func (se *Session) Run(ctx context.Context) error { return se.run(ctx, true) }

// run is Run; without revoke the lease is left to expire, as a killed agent leaves it.
func (se *Session) run(ctx context.Context, revoke bool) error {
	ttl := se.s.ttl
	wait := 200 * time.Millisecond
	reported := false
	report := func(err error) {
		if !reported && se.OnError != nil {
			se.OnError(err)
		}
		reported = true
	}
	for ctx.Err() == nil {
		id, err := se.grant(ctx, ttl)
		if err != nil {
			if ctx.Err() == nil {
				report(err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
			continue
		}
		wait, reported = 200*time.Millisecond, false
		se.setLease(id)
		if err := se.republish(ctx, id); err != nil && ctx.Err() == nil {
			report(err)
		}
		err = se.keepAlive(ctx, id, ttl)
		se.setLease(0)
		if ctx.Err() != nil {
			if revoke {
				se.revoke(ctx, id)
			}
			break
		}
		report(err)
	}
	return nil
}

func (se *Session) grant(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, error) {
	c, rctx, cancel, err := se.s.client(ctx)
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	defer cancel()
	se.s.conn.Op("grant")
	resp, err := c.Grant(rctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", se.s.conn.Classify(err))
	}
	return resp.ID, nil
}

// keepAlive renews lease id until ctx ends (nil) or the lease is lost: etcd says it is
// gone, or no renewal succeeded for a whole TTL.
func (se *Session) keepAlive(ctx context.Context, id clientv3.LeaseID, ttl time.Duration) error {
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		c, rctx, cancel, err := se.s.client(ctx)
		if err == nil {
			se.s.conn.Op("keepalive")
			var resp *clientv3.LeaseKeepAliveResponse
			resp, err = c.KeepAliveOnce(rctx, id)
			cancel()
			switch {
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				return fmt.Errorf("lease %x expired", id)
			case err == nil && resp.TTL <= 0:
				return fmt.Errorf("lease %x expired", id)
			case err == nil:
				last = time.Now()
				continue
			}
			err = se.s.conn.Classify(err)
		}
		if time.Since(last) >= ttl {
			return fmt.Errorf("keep lease %x alive: %w", id, err)
		}
	}
}

// revoke gives the lease back, best effort: an agent that stops leaves the fleet at once.
func (se *Session) revoke(ctx context.Context, id clientv3.LeaseID) {
	c, rctx, cancel, err := se.s.client(context.WithoutCancel(ctx))
	if err != nil {
		return
	}
	defer cancel()
	se.s.conn.Op("revoke")
	c.Revoke(rctx, id)
}

// Publish writes h as the host's registry entry for h.Env, on the session's lease, and its
// copy under seen/ that outlives the lease. Before the lease is granted the entry is only
// kept; Run writes it with the lease.
func (se *Session) Publish(ctx context.Context, h *Host) error {
	if err := checkNames("env", h.Env); err != nil {
		return fmt.Errorf("publish host: %w", err)
	}
	cp := *h
	cp.Host = se.host
	h = &cp
	se.mu.Lock()
	se.entries[h.Env] = h
	id := se.lease
	se.mu.Unlock()
	if id == 0 {
		return nil
	}
	return se.put(ctx, h, id)
}

func (se *Session) put(ctx context.Context, h *Host, id clientv3.LeaseID) error {
	v := mustJSON(h)
	_, err := se.s.conn.Txn(ctx, nil, []clientv3.Op{
		clientv3.OpPut(se.s.hostKey(h.Env, se.host), v, clientv3.WithLease(id)),
		clientv3.OpPut(se.s.seenKey(h.Env, se.host), v),
	})
	if err != nil {
		return fmt.Errorf("publish host %s/%s: %w", h.Env, se.host, err)
	}
	return nil
}

// republish writes every entry on a new lease.
func (se *Session) republish(ctx context.Context, id clientv3.LeaseID) error {
	se.mu.Lock()
	hosts := make([]*Host, 0, len(se.entries))
	for _, h := range se.entries {
		hosts = append(hosts, h)
	}
	se.mu.Unlock()
	var errs []error
	for _, h := range hosts {
		errs = append(errs, se.put(ctx, h, id))
	}
	return errors.Join(errs...)
}
