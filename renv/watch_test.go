package renv

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// watcher runs Store.Watch in a goroutine; the test reads the states fn was called with
// from snaps and the errors from errs, and stop cancels the watch and checks that Watch
// returned promptly with context.Canceled.
type watcher struct {
	snaps chan Snapshot
	errs  chan error
	stop  func()
}

func startWatch(t *testing.T, s *Store, app, env string, from Snapshot, hold <-chan struct{}) *watcher {
	t.Helper()
	w := &watcher{snaps: make(chan Snapshot, 100), errs: make(chan error, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, app, env, from, func(snap Snapshot) {
			w.snaps <- snap
			if hold != nil {
				<-hold
			}
		}, func(err error) { t.Logf("onErr: %v", err); w.errs <- err })
	}()
	stopped := false
	w.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("Watch did not return within 2s of its context's end")
		}
	}
	t.Cleanup(w.stop)
	return w
}

// updateRetrying sets web/production to want once etcd answers again after a restart,
// and returns the revision.
func updateRetrying(t *testing.T, s *Store, want Leaves) int64 {
	t.Helper()
	set := func(d Leaves) error { clear(d); maps.Copy(d, want); return nil }
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		var rev int64
		if _, rev, err = s.Update(context.Background(), "web", "production", set); err == nil {
			return rev
		}
	}
	t.Fatalf("Update after etcd restarted: %v", err)
	return 0
}

// next waits for fn's next call.
func (w *watcher) next(t *testing.T) Snapshot {
	t.Helper()
	select {
	case snap := <-w.snaps:
		return snap
	case <-time.After(10 * time.Second):
		t.Fatal("fn not called within 10s")
		return Snapshot{}
	}
}

// quiet checks that fn is not called for a while.
func (w *watcher) quiet(t *testing.T) {
	t.Helper()
	select {
	case snap := <-w.snaps:
		t.Errorf("fn called with %s at %d, want no call", snap.Leaves.Document(), snap.Rev)
	case <-time.After(300 * time.Millisecond):
	}
}

func leaves(kv ...string) Leaves {
	l := Leaves{}
	for i := 0; i < len(kv); i += 2 {
		l[kv[i]] = json.RawMessage(kv[i+1])
	}
	return l
}

func expect(t *testing.T, got Snapshot, want Leaves, rev int64) {
	t.Helper()
	if !got.Leaves.Equal(want) || (rev != 0 && got.Rev != rev) {
		t.Errorf("fn got %s at %d, want %s at %d", got.Leaves.Document(), got.Rev, want.Document(), rev)
	}
}

func TestStore_Watch(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	s := openStore(t, e, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	put(t, s, "web", "production", leaves("a", `1`))
	l, rev := mustGet(t, s, "web", "production")
	w := startWatch(t, s, "web", "production", Snapshot{l, rev}, nil)

	put(t, s, "web", "staging", leaves("other", `1`)) // another document: no call
	w.quiet(t)
	for _, want := range []Leaves{
		leaves("a", `2`),
		leaves("b", `true`, "c/d", `"x"`, "e", `[1]`), // one transaction: one call
		leaves("n", `0`), leaves("n", `1`), leaves("n", `2`), // sequential changes: each one seen
	} {
		rev := put(t, s, "web", "production", want)
		expect(t, w.next(t), want, rev)
	}
	w.quiet(t) // an idle watch probes etcd, calls nothing
	w.stop()
	if len(w.errs) != 0 {
		t.Errorf("onErr called with %v on a healthy etcd", <-w.errs)
	}

	// A zero Snapshot: Watch reads the document first.
	w = startWatch(t, s, "web", "production", Snapshot{}, nil)
	expect(t, w.next(t), leaves("n", `2`), 0)
}

func TestStore_WatchCompaction(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	s, raw := openStore(t, e, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond }), rawClient(t, e)
	old := put(t, s, "web", "production", leaves("a", `1`))

	hold := make(chan struct{})
	w := startWatch(t, s, "web", "production", Snapshot{leaves("a", `1`), old}, hold)
	rev := put(t, s, "web", "production", leaves("a", `2`))
	expect(t, w.next(t), leaves("a", `2`), rev)
	// fn is held: changes pile up, and compaction removes their revisions.
	put(t, s, "web", "production", leaves("a", `3`))
	want := leaves("a", `4`, "b", `"new"`)
	last := put(t, s, "web", "production", want)
	if _, err := raw.Compact(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	close(hold)
	got := w.next(t)
	for got.Leaves.Equal(leaves("a", `3`)) { // seen before the compaction reached the watch
		got = w.next(t)
	}
	expect(t, got, want, last)
	w.stop()

	// From a compacted revision: the watch is cancelled at once; Watch re-reads.
	w = startWatch(t, s, "web", "production", Snapshot{leaves("a", `1`), old}, nil)
	expect(t, w.next(t), want, last)
	select {
	case err := <-w.errs:
		t.Logf("onErr: %v", err)
	case <-time.After(5 * time.Second):
		t.Error("onErr not told of the compaction")
	}
}

func TestStore_WatchOutage(t *testing.T) {
	t.Parallel()
	// Debian's etcd, a process of its own: an embedded server restarted in this process
	// answers reads but leaves new watch streams silent, which a real restart does not.
	e := testenv.StartEtcdServer(t)
	s := openStore(t, e, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	rev := put(t, s, "web", "production", leaves("a", `1`))
	w := startWatch(t, s, "web", "production", Snapshot{leaves("a", `1`), rev}, nil)

	e.Stop()
	select {
	case err := <-w.errs:
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("onErr(%v), want an error wrapping ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("onErr not called within 5s of etcd stopping")
	}
	time.Sleep(700 * time.Millisecond) // retries under way: onErr is not called again
	if n := len(w.errs); n != 0 {
		t.Errorf("onErr called %d more times during one outage, want 0", n)
	}
	e.Start(t)
	want := leaves("a", `2`)
	rev = updateRetrying(t, s, want)
	expect(t, w.next(t), want, rev)
	// Recovered: once the watch answers (at the latest its idle progress requests), onErr
	// hears of it once, with nil, and nothing else.
	select {
	case err := <-w.errs:
		if err != nil {
			t.Errorf("onErr(%v) after etcd came back, want onErr(nil)", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("onErr(nil) not called within 10s of etcd coming back")
	}
	time.Sleep(time.Second)
	if n := len(w.errs); n != 0 {
		t.Errorf("onErr called %d more times after etcd came back, want 0: %v", n, <-w.errs)
	}

	// Cancelled during an outage: Watch returns promptly.
	e.Stop()
	time.Sleep(300 * time.Millisecond)
	w.stop()
}
