package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestWait_http waits for real HTTP health endpoints that behave well and badly.
func TestWait_http(t *testing.T) {
	hang := func(int, time.Duration) (int, string, bool) { return 0, "", true }
	tests := []struct {
		name   string
		spec   Spec
		answer answer
		check  func(t *testing.T, res Result, took time.Duration, srv serverStats, p *countingProbe)
	}{{
		name:   "healthy",
		spec:   Spec{Timeout: 200 * time.Millisecond, Interval: 20 * time.Millisecond, MinHealthyTime: 100 * time.Millisecond, HealthyDeadline: 3 * time.Second},
		answer: always(200, "ok"),
		check: func(t *testing.T, res Result, took time.Duration, _ serverStats, _ *countingProbe) {
			if !res.Healthy || res.Reason != "" || res.LastError != "" {
				t.Fatalf("got %+v, want healthy without failures", res)
			}
			if res.Took < 100*time.Millisecond || took > 2*time.Second {
				t.Errorf("took %v, want at least min_healthy_time 100ms and well under the deadline", res.Took)
			}
			if res.Checks < 5 {
				t.Errorf("got %d checks, want at least 5 (100ms every 20ms)", res.Checks)
			}
		},
	}, {
		name:   "never healthy",
		spec:   Spec{Timeout: 200 * time.Millisecond, Interval: 20 * time.Millisecond, MinHealthyTime: 100 * time.Millisecond, HealthyDeadline: 500 * time.Millisecond},
		answer: always(503, "warming up\n"),
		check: func(t *testing.T, res Result, took time.Duration, _ serverStats, _ *countingProbe) {
			if res.Healthy {
				t.Fatalf("got healthy, want not")
			}
			want := "deadline 500ms passed: last check: GET http://127.0.0.1:"
			if !strings.HasPrefix(res.Reason, want) || !strings.HasSuffix(res.Reason, "/health: status 503: warming up") {
				t.Errorf("reason: got %q, want %q…/health: status 503: warming up", res.Reason, want)
			}
			if took < 500*time.Millisecond || took > 1500*time.Millisecond {
				t.Errorf("took %v, want about the deadline 500ms", took)
			}
		},
	}, {
		// Healthy for 150ms, long enough for a streak to start, then 503 for 150ms, then
		// healthy again: the streak must start over after the last failure.
		name: "flaps then recovers",
		spec: Spec{Timeout: 200 * time.Millisecond, Interval: 20 * time.Millisecond, MinHealthyTime: 200 * time.Millisecond, HealthyDeadline: 3 * time.Second},
		answer: func(_ int, e time.Duration) (int, string, bool) {
			if e >= 150*time.Millisecond && e < 300*time.Millisecond {
				return 503, "lost db", false
			}
			return 200, "ok", false
		},
		check: func(t *testing.T, res Result, _ time.Duration, srv serverStats, _ *countingProbe) {
			if !res.Healthy {
				t.Fatalf("got %+v, want healthy", res)
			}
			if !strings.HasSuffix(res.LastError, "status 503: lost db") {
				t.Errorf("last error: got %q, want the 503", res.LastError)
			}
			if since := time.Since(srv.lastFail); since < 200*time.Millisecond {
				t.Errorf("healthy %v after the last failure, want at least min_healthy_time 200ms", since)
			}
		},
	}, {
		// Healthy 100ms, failing 40ms, over and over: never min_healthy_time 250ms in a row.
		name: "keeps flapping",
		spec: Spec{Timeout: 200 * time.Millisecond, Interval: 20 * time.Millisecond, MinHealthyTime: 250 * time.Millisecond, HealthyDeadline: 800 * time.Millisecond},
		answer: func(_ int, e time.Duration) (int, string, bool) {
			if e%(140*time.Millisecond) >= 100*time.Millisecond {
				return 500, "flap", false
			}
			return 200, "ok", false
		},
		check: func(t *testing.T, res Result, took time.Duration, _ serverStats, _ *countingProbe) {
			if res.Healthy {
				t.Fatalf("got healthy, want not")
			}
			if !strings.HasPrefix(res.Reason, "deadline 800ms passed: ") || !strings.HasSuffix(res.LastError, "status 500: flap") {
				t.Errorf("got reason %q, last error %q; want the deadline and the 500", res.Reason, res.LastError)
			}
			if took < 800*time.Millisecond || took > 2*time.Second {
				t.Errorf("took %v, want about the deadline 800ms", took)
			}
		},
	}, {
		// Each check hangs until its timeout; Interval is shorter than Timeout, so checks
		// follow one another at once but never overlap.
		name:   "hanging endpoint",
		spec:   Spec{Timeout: 100 * time.Millisecond, Interval: 30 * time.Millisecond, MinHealthyTime: 100 * time.Millisecond, HealthyDeadline: 650 * time.Millisecond},
		answer: hang,
		check: func(t *testing.T, res Result, took time.Duration, srv serverStats, p *countingProbe) {
			if res.Healthy {
				t.Fatalf("got healthy, want not")
			}
			if !strings.HasPrefix(res.Reason, "deadline 650ms passed: last check: GET ") || !strings.HasSuffix(res.Reason, "/health: timed out after 100ms") {
				t.Errorf("reason: got %q, want the deadline and the last check timing out after 100ms", res.Reason)
			}
			if res.Checks < 3 || res.Checks > 6 {
				t.Errorf("got %d checks, want 3..6 (650ms of 100ms timeouts)", res.Checks)
			}
			if m := p.maxIn.Load(); m != 1 {
				t.Errorf("%d checks ran at once, want 1", m)
			}
			// The handler of a timed-out check notices the disconnect a moment later, so the
			// server may briefly see the next check beside it; more would be a pile-up.
			if srv.maxIn > 2 {
				t.Errorf("the endpoint saw %d requests at once, want at most 2 (no pile-up)", srv.maxIn)
			}
			for _, d := range p.durations()[:res.Checks] { // not the one the deadline cut
				if d < 90*time.Millisecond || d > 600*time.Millisecond {
					t.Errorf("a check took %v, want about its timeout 100ms", d)
				}
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newHealthServer(t, tt.answer)
			p := &countingProbe{p: HTTPProbe(srv.Port, "/health")}
			begin := time.Now()
			res, err := Wait(t.Context(), tt.spec, p, unitStates(step{0, active(100)}))
			took := time.Since(begin)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if p.maxIn.Load() > 1 {
				t.Errorf("%d checks ran at once, want 1", p.maxIn.Load())
			}
			if got := len(p.durations()); got < res.Checks {
				t.Errorf("Result.Checks %d, but only %d checks ran", res.Checks, got)
			}
			tt.check(t, res, took, srv.stats(), p)
		})
	}
}

// TestWait_unit drives Wait through the unit states systemd reports.
func TestWait_unit(t *testing.T) {
	spec := Spec{Timeout: 100 * time.Millisecond, Interval: 20 * time.Millisecond, MinHealthyTime: 200 * time.Millisecond, HealthyDeadline: 800 * time.Millisecond}
	restarted := active(100)
	restarted.NRestarts = 1
	restarted.MainPID = 101
	failed := UnitState{ActiveState: "failed", SubState: "failed"}
	autoRestart := UnitState{ActiveState: "activating", SubState: "auto-restart", MainPID: 0}
	starting := UnitState{ActiveState: "activating", SubState: "start", MainPID: 100}
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	activeSince := func(pid uint32, at time.Time) UnitState { s := active(pid); s.Since = at; return s }

	tests := []struct {
		name    string
		probe   Probe
		steps   []step
		healthy bool
		reason  string        // the whole reason, or its start when it ends with "…"
		last    string        // LastError
		endsBy  time.Duration // when set: the unit changed then, and Wait must end at once
		minTook time.Duration
	}{
		{name: "active and passing", probe: passing, steps: []step{{0, active(100)}}, healthy: true, minTook: 200 * time.Millisecond},
		{name: "no probe: state alone", steps: []step{{0, active(100)}}, healthy: true, minTook: 200 * time.Millisecond},
		{name: "restarted by systemd", probe: passing, steps: []step{{0, active(100)}, {150 * time.Millisecond, restarted}},
			reason: "unit restarted (NRestarts 0 → 1)", endsBy: 150 * time.Millisecond},
		{name: "restarted by hand", probe: passing, steps: []step{{0, active(100)}, {150 * time.Millisecond, active(107)}},
			reason: "unit restarted (MainPID 100 → 107)", endsBy: 150 * time.Millisecond},
		{name: "went down and up between two looks", probe: passing,
			steps:  []step{{0, activeSince(100, since)}, {150 * time.Millisecond, activeSince(100, since.Add(time.Second))}},
			reason: "unit restarted (active since 03:04:05.000 → 03:04:06.000)", endsBy: 150 * time.Millisecond},
		{name: "failed", probe: passing, steps: []step{{0, active(100)}, {150 * time.Millisecond, failed}},
			reason: "unit failed (ActiveState failed, SubState failed)", endsBy: 150 * time.Millisecond},
		{name: "waits to be restarted", probe: passing, steps: []step{{0, active(100)}, {150 * time.Millisecond, autoRestart}},
			reason: "unit exited and waits to be restarted (ActiveState activating, SubState auto-restart)", endsBy: 150 * time.Millisecond},
		{name: "not active at all", probe: passing, steps: []step{{0, UnitState{ActiveState: "inactive", SubState: "dead"}}},
			reason: "unit not active (ActiveState inactive, SubState dead)", endsBy: time.Nanosecond},
		// A Type=notify unit is activating until it sends READY=1: the streak starts then.
		{name: "notify: ready later", probe: passing, steps: []step{{0, starting}, {150 * time.Millisecond, active(100)}},
			healthy: true, last: "unit still starting (ActiveState activating, SubState start)", minTook: 350 * time.Millisecond},
		{name: "notify: ready after a restart", probe: passing,
			steps:   []step{{0, UnitState{ActiveState: "activating", SubState: "start", MainPID: 100, Since: since}}, {100 * time.Millisecond, activeSince(100, since.Add(time.Minute))}},
			healthy: true, last: "unit still starting (ActiveState activating, SubState start)", minTook: 300 * time.Millisecond},
		{name: "notify: never ready", probe: passing, steps: []step{{0, starting}},
			reason: "deadline 800ms passed: last check: unit still starting (ActiveState activating, SubState start)",
			last:   "unit still starting (ActiveState activating, SubState start)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var probe Probe
			var counted *countingProbe
			if tt.probe != nil {
				counted = &countingProbe{p: tt.probe}
				probe = counted
			}
			res, err := Wait(t.Context(), spec, probe, unitStates(tt.steps...))
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if res.Healthy != tt.healthy {
				t.Fatalf("got %+v, want healthy %v", res, tt.healthy)
			}
			if tt.reason != "" && res.Reason != tt.reason {
				t.Errorf("reason: got %q, want %q", res.Reason, tt.reason)
			}
			if res.LastError != tt.last {
				t.Errorf("last error: got %q, want %q", res.LastError, tt.last)
			}
			if res.Took < tt.minTook {
				t.Errorf("took %v, want at least %v", res.Took, tt.minTook)
			}
			if limit := tt.endsBy + 500*time.Millisecond; tt.endsBy != 0 && res.Took > limit {
				t.Errorf("took %v, want it to end at once (within %v)", res.Took, limit)
			}
			if counted == nil && res.Checks != 0 {
				t.Errorf("got %d checks without a probe, want 0", res.Checks)
			}
		})
	}
}

func TestWait_stateError(t *testing.T) {
	errBus := errors.New("connection closed")
	res, err := Wait(t.Context(), Spec{Interval: 10 * time.Millisecond}, passing,
		func(context.Context) (UnitState, error) { return UnitState{}, errBus })
	if !errors.Is(err, errBus) || res.Healthy {
		t.Fatalf("got %+v, %v; want not healthy and the state's error", res, err)
	}
	if want := "wait for healthy: read unit state: connection closed"; err.Error() != want {
		t.Errorf("error: got %q, want %q", err, want)
	}
}

func TestWait_cancel(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	stop := errors.New("agent shutting down")
	time.AfterFunc(100*time.Millisecond, func() { cancel(stop) })
	res, err := Wait(ctx, Spec{Interval: 10 * time.Millisecond, MinHealthyTime: time.Minute, HealthyDeadline: 2 * time.Minute}, passing, nil)
	if !errors.Is(err, stop) || res.Healthy || res.Reason != "stopped: agent shutting down" {
		t.Fatalf("got %+v, %v; want stopped by the cause", res, err)
	}
	if res.Took > time.Second {
		t.Errorf("took %v after a cancel at 100ms", res.Took)
	}
}

// TestWait_deadlineCutsCheck: a check that the deadline cuts short is not counted, and the
// reason says no check completed.
func TestWait_deadlineCutsCheck(t *testing.T) {
	srv := newHealthServer(t, func(int, time.Duration) (int, string, bool) { return 0, "", true })
	res, err := Wait(t.Context(), Spec{Timeout: 5 * time.Second, MinHealthyTime: 100 * time.Millisecond, HealthyDeadline: 300 * time.Millisecond},
		HTTPProbe(srv.Port, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Healthy || res.Checks != 0 || res.Reason != "deadline 300ms passed before a check completed" {
		t.Fatalf("got %+v, want no check and the deadline", res)
	}
	if res.Took > 1500*time.Millisecond {
		t.Errorf("took %v, want about the deadline 300ms", res.Took)
	}
}

func TestSpec_WithDefaults(t *testing.T) {
	got := Spec{HTTP: "/h", Interval: 5 * time.Second}.WithDefaults()
	want := Spec{HTTP: "/h", Timeout: 2 * time.Second, Interval: 5 * time.Second, MinHealthyTime: 3 * time.Second, HealthyDeadline: 60 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestWaitAll(t *testing.T) {
	fast := Spec{Timeout: 200 * time.Millisecond, Interval: 20 * time.Millisecond, MinHealthyTime: 50 * time.Millisecond, HealthyDeadline: 2 * time.Second}
	slow := fast
	slow.MinHealthyTime = 600 * time.Millisecond
	short := fast
	short.HealthyDeadline = 300 * time.Millisecond
	ok := newHealthServer(t, always(200, "ok"))
	sick := newHealthServer(t, always(503, "sick"))
	up := unitStates(step{0, active(100)})

	tests := []struct {
		name     string
		failFast bool
		inst     []Instance
		want     []string // per instance: "ok", or a substring of its reason or error
		maxTook  time.Duration
	}{{
		name: "all healthy",
		inst: []Instance{
			{Name: "web@1", Spec: fast, Probe: HTTPProbe(ok.Port, "/"), State: up},
			{Name: "web@2", Spec: slow, Probe: HTTPProbe(ok.Port, "/"), State: up},
		},
		want:    []string{"ok", "ok"},
		maxTook: 1500 * time.Millisecond,
	}, {
		name: "one sick, every verdict",
		inst: []Instance{
			{Name: "web@1", Spec: fast, Probe: HTTPProbe(ok.Port, "/"), State: up},
			{Name: "web@2", Spec: short, Probe: HTTPProbe(sick.Port, "/"), State: up},
			{Name: "web@3", Spec: slow, Probe: HTTPProbe(ok.Port, "/"), State: up},
		},
		want:    []string{"ok", "deadline 300ms passed: last check: GET", "ok"},
		maxTook: 1500 * time.Millisecond,
	}, {
		name:     "fail fast",
		failFast: true,
		inst: []Instance{
			{Name: "web@1", Spec: fast, Probe: HTTPProbe(ok.Port, "/"), State: up},
			{Name: "web@2", Spec: slow, Probe: HTTPProbe(ok.Port, "/"),
				State: unitStates(step{0, active(100)}, step{100 * time.Millisecond, active(200)})},
			{Name: "web@3", Spec: Spec{Interval: 20 * time.Millisecond, MinHealthyTime: time.Minute, HealthyDeadline: 2 * time.Minute},
				Probe: HTTPProbe(ok.Port, "/"), State: up},
		},
		want: []string{"ok", "unit restarted (MainPID 100 → 200)",
			"stopped: another instance of the batch failed: web@2: unit restarted (MainPID 100 → 200)"},
		maxTook: 1500 * time.Millisecond,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var probes []*countingProbe
			for i := range tt.inst {
				c := &countingProbe{p: tt.inst[i].Probe}
				probes = append(probes, c)
				tt.inst[i].Probe = c
			}
			begin := time.Now()
			results := WaitAll(t.Context(), tt.inst, tt.failFast)
			if took := time.Since(begin); took > tt.maxTook {
				t.Errorf("WaitAll took %v, want at most %v", took, tt.maxTook)
			}
			for i, c := range probes {
				if n := c.inflight.Load(); n != 0 {
					t.Errorf("%s: %d checks still running after WaitAll returned", tt.inst[i].Name, n)
				}
			}
			if len(results) != len(tt.want) {
				t.Fatalf("got %d results, want %d", len(results), len(tt.want))
			}
			for i, r := range results {
				if r.Name != tt.inst[i].Name {
					t.Errorf("result %d: got %s, want %s", i, r.Name, tt.inst[i].Name)
				}
				if tt.want[i] == "ok" {
					if !r.OK() {
						t.Errorf("%s: got %+v, want healthy", r.Name, r)
					}
					continue
				}
				if r.OK() || !strings.Contains(r.Reason, tt.want[i]) {
					t.Errorf("%s: got reason %q (err %v), want %q", r.Name, r.Reason, r.Err, tt.want[i])
				}
			}
			if tt.failFast {
				if last := results[len(results)-1]; !errors.Is(last.Err, ErrBatchFailed) {
					t.Errorf("%s: got error %v, want ErrBatchFailed", last.Name, last.Err)
				}
			}
		})
	}
}
