package sdnotify

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
)

// fakeNotifier records every message; notify, when set, decides what Notify returns.
type fakeNotifier struct {
	notify func(state string) error

	mu   sync.Mutex
	msgs []string
}

func (f *fakeNotifier) Notify(state string) error {
	if f.notify != nil {
		if err := f.notify(state); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, state)
	return nil
}

func (f *fakeNotifier) messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.msgs...)
}

func (f *fakeNotifier) count(msg string) int {
	n := 0
	for _, m := range f.messages() {
		if m == msg {
			n++
		}
	}
	return n
}

// waitFor polls until cond holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run starts s.Run and returns a func that stops it and returns its error.
func run(t *testing.T, s *Supervisor) (stop func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-errc })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// status is a status func whose answer the test sets.
type status struct{ v atomic.Value }

func newStatus(s string) *status { st := &status{}; st.v.Store(s); return st }
func (s *status) set(v string)   { s.v.Store(v) }
func (s *status) get() string    { return s.v.Load().(string) }

const watchdog = 40 * time.Millisecond // a round every 20 ms

func TestSupervisor_Run_readyAndStatus(t *testing.T) {
	t.Parallel()
	n := &fakeNotifier{}
	st := newStatus("idle; 2 apps")
	s := New(n, st.get, zerolog.New(zerolog.NewTestWriter(t)))
	s.StatusInterval = 20 * time.Millisecond
	stop := run(t, s)
	waitFor(t, "READY", func() bool { return len(n.messages()) == 1 })
	if got, want := n.messages()[0], "READY=1\nSTATUS=idle; 2 apps"; got != want {
		t.Fatalf("first message: got %q, want %q", got, want)
	}
	// A burst of changes is coalesced: the newest is sent, not one datagram per change.
	for i := range 200 {
		st.set("deploying web " + strings.Repeat("a", i%12+1))
		s.Changed()
	}
	st.set("deploying web abc1234def56 (batch 2 of 3)")
	s.Changed()
	waitFor(t, "the newest status", func() bool {
		m := n.messages()
		return m[len(m)-1] == "STATUS=deploying web abc1234def56 (batch 2 of 3)"
	})
	if got := len(n.messages()); got > 10 {
		t.Errorf("201 changes in a burst sent %d messages, want a few", got)
	}
	// An unchanged status is not sent again; a newline cannot start another assignment.
	before := len(n.messages())
	s.Changed()
	time.Sleep(3 * s.StatusInterval)
	st.set("restarting web\nREADY=1")
	s.Changed()
	waitFor(t, "the restart status", func() bool { return len(n.messages()) == before+1 })
	if got, want := n.messages()[before], "STATUS=restarting web READY=1"; got != want {
		t.Errorf("status: got %q, want %q", got, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := n.messages()[len(n.messages())-1], "STOPPING=1\nSTATUS=restarting web READY=1"; got != want {
		t.Errorf("last message: got %q, want %q", got, want)
	}
	if got := n.count("WATCHDOG=1"); got != 0 {
		t.Errorf("without a watchdog: %d pings, want none", got)
	}
}

// TestSupervisor_Run_watchdog: pings only while every check passes.
func TestSupervisor_Run_watchdog(t *testing.T) {
	t.Parallel()
	blocks := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	late := func(ctx context.Context) error { <-ctx.Done(); return nil }
	tests := []struct {
		name    string
		failing func(ctx context.Context) error
		wantLog string
	}{
		{"check fails", func(context.Context) error { return errors.New("worker of web wedged") }, "queues: worker of web wedged"},
		{"check blocks until the deadline", blocks, "queues: no answer within 10ms"},
		{"check passes too late", late, "queues: no answer within 10ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := &fakeNotifier{}
			var logs syncbuf.Buffer
			s := New(n, func() string { return "idle" }, zerolog.New(&logs))
			s.Watchdog = watchdog
			var sick atomic.Bool
			s.Checks = []Check{
				{Name: "webhook", Func: func(context.Context) error { return nil }},
				{Name: "queues", Func: func(ctx context.Context) error {
					if sick.Load() {
						return tt.failing(ctx)
					}
					return nil
				}},
			}
			stop := run(t, s)
			waitFor(t, "pings", func() bool { return n.count("WATCHDOG=1") >= 3 })
			sick.Store(true)
			time.Sleep(watchdog) // a round under way may still ping
			pings := n.count("WATCHDOG=1")
			time.Sleep(5 * watchdog)
			if got := n.count("WATCHDOG=1"); got != pings {
				t.Errorf("while a check fails: %d pings, want none", got-pings)
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log: got %s, want it to say %q", logs.String(), tt.wantLog)
			}
			sick.Store(false)
			waitFor(t, "pings again", func() bool { return n.count("WATCHDOG=1") >= pings+2 })
			if !strings.Contains(logs.String(), "watchdog checks pass again") {
				t.Errorf("log: got %s, want the recovery", logs.String())
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSupervisor_Stopping: STOPPING=1 ends the pings; status changes still go out.
func TestSupervisor_Stopping(t *testing.T) {
	t.Parallel()
	n := &fakeNotifier{}
	st := newStatus("deploying web abc1234def56: running script")
	s := New(n, st.get, zerolog.New(zerolog.NewTestWriter(t)))
	s.Watchdog = watchdog
	s.StatusInterval = time.Millisecond
	stop := run(t, s)
	waitFor(t, "pings", func() bool { return n.count("WATCHDOG=1") >= 2 })
	s.Stopping()
	s.Stopping() // once only
	if got := n.count("STOPPING=1\nSTATUS=deploying web abc1234def56: running script"); got != 1 {
		t.Fatalf("STOPPING messages: got %d, want 1 in %q", got, n.messages())
	}
	time.Sleep(watchdog)
	pings := n.count("WATCHDOG=1")
	st.set("stopping; idle")
	s.Changed()
	waitFor(t, "the status while stopping", func() bool { return n.count("STATUS=stopping; idle") == 1 })
	time.Sleep(3 * watchdog)
	if got := n.count("WATCHDOG=1"); got != pings {
		t.Errorf("after STOPPING=1: %d pings, want none", got-pings)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := n.count("STOPPING=1\nSTATUS=stopping; idle"); got != 0 {
		t.Errorf("STOPPING=1 sent again when Run ended: %q", n.messages())
	}
}

func TestSupervisor_Run_readyFails(t *testing.T) {
	t.Parallel()
	boom := errors.New("notify systemd: connection refused")
	n := &fakeNotifier{notify: func(string) error { return boom }}
	s := New(n, func() string { return "idle" }, zerolog.New(zerolog.NewTestWriter(t)))
	if err := s.Run(t.Context()); !errors.Is(err, boom) {
		t.Errorf("got %v, want %v", err, boom)
	}
}

// TestSupervisor_Run_sendFails: a failing socket is logged once, not at every ping.
func TestSupervisor_Run_sendFails(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	n := &fakeNotifier{notify: func(string) error {
		if broken.Load() {
			return errors.New("notify systemd: no buffer space")
		}
		return nil
	}}
	var logs syncbuf.Buffer
	s := New(n, func() string { return "idle" }, zerolog.New(&logs))
	s.Watchdog = watchdog
	stop := run(t, s)
	waitFor(t, "READY", func() bool { return len(n.messages()) > 0 })
	broken.Store(true)
	time.Sleep(6 * watchdog)
	stop()
	if got := strings.Count(logs.String(), "no buffer space"); got != 1 {
		t.Errorf("logged %d times, want once: %s", got, logs.String())
	}
}
