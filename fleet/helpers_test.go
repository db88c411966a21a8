package fleet

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// openStore opens a Store on e with a 2s lease TTL, closed in t.Cleanup.
func openStore(t testing.TB, e *testenv.Etcd) *Store {
	t.Helper()
	s, err := Open(Config{Conn: etcdconn.Config{Endpoints: e.Endpoints, RequestTimeout: time.Second}, LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// live is a session whose Run goes on until the test ends (or stop is called).
type live struct {
	*Session
	stop func()
}

// startSession runs host's session on a store of its own (a host's own connection) and
// waits for its lease.
func startSession(t testing.TB, e *testenv.Etcd, host string) *live {
	t.Helper()
	return startSessionRevoking(t, e, host, true)
}

// startSessionRevoking is startSession; without revoke, stop leaves the lease to expire as
// a killed agent does.
func startSessionRevoking(t testing.TB, e *testenv.Etcd, host string, revoke bool) *live {
	t.Helper()
	s := openStore(t, e)
	se, err := s.Session(host)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); se.run(ctx, revoke) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if _, err := se.waitLease(wctx); err != nil {
		t.Fatalf("%s: no lease: %v", host, err)
	}
	return &live{Session: se, stop: stop}
}

// reasons collects what Acquire says it waits for.
type reasons struct {
	mu   sync.Mutex
	list []string
}

func (r *reasons) add(s string) { r.mu.Lock(); r.list = append(r.list, s); r.mu.Unlock() }

func (r *reasons) has(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// waitFor polls cond every 10ms for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
