package health

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// answer is what a healthServer says to its n-th request (from 0), elapsed after the first.
type answer func(n int, elapsed time.Duration) (status int, body string, hang bool)

// healthServer is a real HTTP health endpoint on 127.0.0.1 that records what it saw.
type healthServer struct {
	srv  *httptest.Server
	Port int

	mu       sync.Mutex
	first    time.Time
	requests int
	inflight int
	maxIn    int       // most requests handled at once
	lastFail time.Time // when the last non-2xx answer was written
	conns    int       // connections accepted
}

// newHealthServer starts a health endpoint answering with a; a hanging answer holds the
// request until the client goes away (or 10s).
func newHealthServer(t testing.TB, a answer) *healthServer {
	t.Helper()
	h := &healthServer{}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		if h.requests == 0 {
			h.first = time.Now()
		}
		n := h.requests
		h.requests++
		h.inflight++
		h.maxIn = max(h.maxIn, h.inflight)
		elapsed := time.Since(h.first)
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			h.inflight--
			h.mu.Unlock()
		}()

		status, body, hang := a(n, elapsed)
		if hang {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		if status < 200 || status > 299 {
			h.mu.Lock()
			h.lastFail = time.Now()
			h.mu.Unlock()
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	h.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			h.mu.Lock()
			h.conns++
			h.mu.Unlock()
		}
	}
	h.srv.Start()
	t.Cleanup(h.srv.Close)
	h.Port = h.srv.Listener.Addr().(*net.TCPAddr).Port
	return h
}

type serverStats struct {
	requests, maxIn, conns int
	lastFail               time.Time
}

func (h *healthServer) stats() serverStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return serverStats{requests: h.requests, maxIn: h.maxIn, conns: h.conns, lastFail: h.lastFail}
}

// always answers status with body.
func always(status int, body string) answer {
	return func(int, time.Duration) (int, string, bool) { return status, body, false }
}

// closedPort returns a port on 127.0.0.1 that nothing listens on (it was free a moment ago).
func closedPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// countingProbe wraps a Probe and records how many checks ran at once and how long each took.
type countingProbe struct {
	p Probe

	inflight, maxIn atomic.Int32
	mu              sync.Mutex
	took            []time.Duration
}

func (c *countingProbe) Check(ctx context.Context) error {
	n := c.inflight.Add(1)
	defer c.inflight.Add(-1)
	for {
		m := c.maxIn.Load()
		if n <= m || c.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	begin := time.Now()
	err := c.p.Check(ctx)
	c.mu.Lock()
	c.took = append(c.took, time.Since(begin))
	c.mu.Unlock()
	return err
}

func (c *countingProbe) durations() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.took...)
}

// probeFunc is a Probe made of a func.
type probeFunc func(ctx context.Context) error

func (f probeFunc) Check(ctx context.Context) error { return f(ctx) }

// passing is a probe that always passes.
var passing = probeFunc(func(context.Context) error { return nil })

// step is a unit state that holds from after (since the state func's first call) on.
type step struct {
	after time.Duration
	st    UnitState
}

// unitStates returns a unit state func that answers, at each call, the last step whose
// after has passed since its first call (steps in order, the first at 0).
func unitStates(steps ...step) func(context.Context) (UnitState, error) {
	var mu sync.Mutex
	var start time.Time
	return func(context.Context) (UnitState, error) {
		mu.Lock()
		defer mu.Unlock()
		if start.IsZero() {
			start = time.Now()
		}
		var st UnitState
		for _, s := range steps {
			if time.Since(start) >= s.after {
				st = s.st
			}
		}
		return st, nil
	}
}

// active is a running unit with main process pid.
func active(pid uint32) UnitState {
	return UnitState{ActiveState: "active", SubState: "running", MainPID: pid}
}
