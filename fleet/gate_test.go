package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

func TestSession_Acquire_maxParallel(t *testing.T) {
	e := testenv.StartEtcd(t)
	const hosts, parallel = 8, 3
	var running, most atomic.Int32
	var wg sync.WaitGroup
	for i := range hosts {
		se := startSession(t, e, fmt.Sprintf("h%d", i))
		wg.Go(func() {
			tk := Ticket{App: "web", Env: "production", SHA: shaA, Deploy: se.Host(), Policy: &Policy{MaxParallel: parallel}}
			slot, err := se.Acquire(context.Background(), tk, nil)
			if err != nil {
				t.Errorf("%s: Acquire: %v", se.Host(), err)
				return
			}
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(50 * time.Millisecond)
			running.Add(-1)
			if err := slot.Release(context.Background(), Succeeded, ""); err != nil {
				t.Errorf("%s: Release: %v", se.Host(), err)
			}
		})
	}
	wg.Wait()
	if got := most.Load(); got != parallel {
		t.Errorf("hosts deploying at once: got at most %d, want %d", got, parallel)
	}
}

func TestSession_Acquire_percent(t *testing.T) {
	e := testenv.StartEtcd(t)
	var ses []*live
	for i := range 4 {
		se := startSession(t, e, fmt.Sprintf("h%d", i))
		if err := se.Publish(context.Background(), &Host{Env: "production", Apps: map[string]*App{"web": {}}}); err != nil {
			t.Fatal(err)
		}
		ses = append(ses, se)
	}
	// 50% of 4 hosts: two at once; the third waits.
	p := &Policy{MaxPercent: 50}
	var slots []*Slot
	for _, se := range ses[:2] {
		slot, err := se.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d", Policy: p}, nil)
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, slot)
	}
	var r reasons
	got := make(chan error, 1)
	go func() {
		_, err := ses[2].Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d", Policy: p}, r.add)
		got <- err
	}()
	waitFor(t, 5*time.Second, "the third host says it waits for a slot", func() bool { return r.has("waiting for a slot: 2 hosts deploy at once") })
	slots[0].Release(context.Background(), Succeeded, "")
	if err := <-got; err != nil {
		t.Fatalf("third host: %v", err)
	}
}

func TestSession_Acquire_canaryFirst(t *testing.T) {
	e := testenv.StartEtcd(t)
	canary, other := startSession(t, e, "c1"), startSession(t, e, "h2")
	p := &Policy{MaxParallel: 5, Canary: 1, HaltOnFailure: true}
	slot, err := canary.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d1", Policy: p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var r reasons
	got := make(chan error, 1)
	var acquired atomic.Bool
	go func() {
		_, err := other.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d2", Policy: p}, r.add)
		acquired.Store(true)
		got <- err
	}()
	waitFor(t, 5*time.Second, "the second host waits for the canary", func() bool { return r.has("waiting for 1 canary host(s) to deploy aaaaaaaaaaaa: 0 succeeded") })
	time.Sleep(100 * time.Millisecond)
	if acquired.Load() {
		t.Fatal("a host started before the canary succeeded")
	}
	slot.Release(context.Background(), Succeeded, "")
	if err := <-got; err != nil {
		t.Fatalf("after the canary: %v", err)
	}
}

func TestSession_Acquire_haltedByFailingCanary(t *testing.T) {
	e := testenv.StartEtcd(t)
	canary := startSession(t, e, "c1")
	p := &Policy{MaxParallel: 5, Canary: 1, HaltOnFailure: true}
	slot, err := canary.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d1", Policy: p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const waiting = 5
	errs := make(chan error, waiting)
	ended := make(chan time.Time, waiting)
	for i := range waiting {
		se := startSession(t, e, fmt.Sprintf("h%d", i))
		var r reasons
		go func() {
			_, err := se.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d", Policy: p}, r.add)
			ended <- time.Now()
			errs <- err
		}()
		waitFor(t, 5*time.Second, se.Host()+" waits", func() bool { return r.has("canary") })
	}
	failed := time.Now()
	slot.Release(context.Background(), Failed, "script exited 1")
	var last time.Time
	for range waiting {
		err := <-errs
		var he *HaltedError
		if !errors.As(err, &he) || he.Halt.Host != "c1" || he.Halt.Error != "script exited 1" {
			t.Errorf("Acquire: got %v, want halted by c1 with the error", err)
		}
		if at := <-ended; at.After(last) {
			last = at
		}
	}
	if took := last.Sub(failed); took > 500*time.Millisecond {
		t.Errorf("halt reached every waiting host in %v, want < 500ms", took)
	}
	// The halt holds for this commit; the host that comes later gives up at once.
	late := startSession(t, e, "late")
	if _, err := late.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d", Policy: p}, nil); !errors.Is(err, ErrHalted) {
		t.Errorf("late host: got %v, want ErrHalted", err)
	}
	// Another commit is not halted; its success clears the old halt.
	s2, err := late.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaB, Deploy: "d3", Policy: p}, nil)
	if err != nil {
		t.Fatalf("a later commit: %v", err)
	}
	s2.Release(context.Background(), Succeeded, "")
	if _, h, err := late.s.Check(context.Background(), "web", "production", shaA); err != nil || h != nil {
		t.Errorf("after a later commit succeeded: halt %+v, %v; want none", h, err)
	}
}

func TestSession_Acquire_killedHolderFreesSlot(t *testing.T) {
	e := testenv.StartEtcd(t)
	holder, waiter := startSessionRevoking(t, e, "h1", false), startSession(t, e, "h2")
	p := &Policy{MaxParallel: 1}
	if _, err := holder.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d1", Policy: p}, nil); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	var r reasons
	go func() {
		_, err := waiter.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d2", Policy: p}, r.add)
		got <- err
	}()
	waitFor(t, 5*time.Second, "the second host waits for the slot", func() bool { return r.has("waiting for a slot") })
	// A killed agent: its keepalives stop, nothing is revoked.
	holder.stop()
	killed := time.Now()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// etcd expires leases in a sweep every 500ms.
	if took, ttl := time.Since(killed), holder.s.LeaseTTL(); took > ttl+600*time.Millisecond {
		t.Errorf("slot freed %v after the holder died, want within its lease TTL %v (+ etcd's 500ms sweep)", took, ttl)
	}
}

func TestSession_Acquire_lock(t *testing.T) {
	e := testenv.StartEtcd(t)
	se := startSession(t, e, "h1")
	s := se.s
	ctx := context.Background()
	if _, err := s.SetLock(ctx, "web", "production", Lock{Who: "alice", Why: "db migration", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if held, err := s.SetLock(ctx, "web", "production", Lock{Who: "bob"}); !errors.Is(err, ErrLocked) || held == nil || held.Who != "alice" {
		t.Errorf("second lock: got %+v, %v; want alice's lock and ErrLocked", held, err)
	}
	var r reasons
	got := make(chan error, 1)
	go func() {
		_, err := se.Acquire(ctx, Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d1"}, r.add)
		got <- err
	}()
	waitFor(t, 5*time.Second, "the deploy waits for the lock", func() bool { return r.has("locked: by alice since") && r.has("db migration") })
	select {
	case err := <-got:
		t.Fatalf("Acquire returned while locked: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if l, err := s.Unlock(ctx, "web", "production"); err != nil || l == nil || l.Why != "db migration" {
		t.Fatalf("Unlock: got %+v, %v", l, err)
	}
	if err := <-got; err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	if l, err := s.Unlock(ctx, "web", "production"); err != nil || l != nil {
		t.Errorf("Unlock of an unlocked app: got %+v, %v; want nil, nil", l, err)
	}
}

func TestSession_Acquire_cancelRemovesKeys(t *testing.T) {
	e := testenv.StartEtcd(t)
	h1, h2 := startSession(t, e, "h1"), startSession(t, e, "h2")
	p := &Policy{MaxParallel: 1}
	slot, err := h1.Acquire(context.Background(), Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d1", Policy: p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var r reasons
	got := make(chan error, 1)
	go func() {
		_, err := h2.Acquire(ctx, Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d2", Policy: p}, r.add)
		got <- err
	}()
	waitFor(t, 5*time.Second, "h2 waits", func() bool { return r.has("waiting for a slot") })
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: got %v", err)
	}
	slot.Release(context.Background(), Succeeded, "")
	snap, err := h1.s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := snap.Slots["web/production"]; len(s) != 0 {
		t.Errorf("slots after both ended: %v, want none", s)
	}
}
