package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Defaults for a Spec's timing, applied by WithDefaults. They suit a typical web service and
// are the ones service.json documents: a check gets 2s, runs every second, an instance must
// pass for 3s in a row, and has a minute to get there.
const (
	DefaultTimeout         = 2 * time.Second
	DefaultInterval        = 1 * time.Second
	DefaultMinHealthyTime  = 3 * time.Second
	DefaultHealthyDeadline = 60 * time.Second
)

// Spec is how a service's instances are health-checked: service.json's health block, which
// the agent converts from units.Health (this package imports no other leaf). At most one of
// HTTP, TCP and Command is set; none means the unit's state alone decides (see ProbeFor).
type Spec struct {
	HTTP    string   // a path such as "/healthz", fetched from 127.0.0.1:PORT; 2xx is healthy
	TCP     bool     // a connection to 127.0.0.1:PORT is accepted
	Command []string // exits 0, run by the probe the caller gives ProbeFor
	// Timeout bounds one check and Interval separates the starts of two checks; an instance
	// must pass every check for MinHealthyTime, and get there within HealthyDeadline.
	Timeout, Interval, MinHealthyTime, HealthyDeadline time.Duration
}

// WithDefaults returns s with every zero (or negative) duration set to its Default.
func (s Spec) WithDefaults() Spec {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&s.Timeout, DefaultTimeout)
	def(&s.Interval, DefaultInterval)
	def(&s.MinHealthyTime, DefaultMinHealthyTime)
	def(&s.HealthyDeadline, DefaultHealthyDeadline)
	return s
}

// UnitState is what systemd says of an instance's unit: the D-Bus properties of the same
// names (Since is ActiveEnterTimestamp). The caller reads them and passes Wait a func, so
// this package needs no D-Bus.
type UnitState struct {
	ActiveState, SubState string
	// Result is the service's Result property ("success", "exit-code", "signal", …): why it
	// last stopped or failed.
	Result    string
	NRestarts uint32 // restarts by systemd (Restart=), a service property
	MainPID   uint32 // 0 while there is none
	// Since is ActiveEnterTimestamp: when the unit last became active. While it is
	// activating again it still holds the previous activation's time.
	Since time.Time
}

// Active reports whether the unit is up: ActiveState active, or reloading or refreshing,
// which are states of an active unit.
func (s UnitState) Active() bool {
	switch s.ActiveState {
	case "active", "reloading", "refreshing":
		return true
	}
	return false
}

// starting reports whether the unit is on its way up: activating, but not waiting to be
// restarted after its process exited (SubState auto-restart, or auto-restart-queued).
func (s UnitState) starting() bool {
	return s.ActiveState == "activating" && !strings.HasPrefix(s.SubState, "auto-restart")
}

func (s UnitState) describe() string {
	return fmt.Sprintf("ActiveState %s, SubState %s", s.ActiveState, s.SubState)
}

// Result is Wait's verdict on one instance.
type Result struct {
	Healthy bool
	// Took is the time from the start of Wait to the verdict.
	Took time.Duration
	// Checks is how many probes were run to completion.
	Checks int
	// LastError is the most recent failed check or observation (a probe's error, or the
	// unit still starting), even when later checks passed; "" when none failed.
	LastError string
	// Reason says why the instance is not healthy, e.g.
	// "unit restarted (NRestarts 0 → 1)",
	// "unit failed (ActiveState failed, SubState failed)",
	// "deadline 10s passed: last check: GET http://127.0.0.1:3001/health: status 503: …" or
	// "deadline 10s passed: healthy for 1.2s of min_healthy_time 3s; last failure: …".
	// It is "" when Healthy.
	Reason string
}

// errDeadline is the cause of Wait's context when HealthyDeadline passes.
var errDeadline = errors.New("healthy deadline passed")

// Wait decides whether one instance becomes healthy. Call it once the instance's start or
// restart job is done; the deadline counts from the call. The instance is healthy when, all
// before spec.HealthyDeadline:
//   - its unit is active (state), and has not restarted since Wait's first observation: its
//     NRestarts and MainPID are unchanged, and so is Since once the unit was seen active;
//   - probe passes every check for spec.MinHealthyTime in a row, counted from the start of
//     the first check of the streak.
//
// Every spec.Interval (from one check's start to the next; never two at once, so a probe
// slower than Interval is followed at once by the next, never overlapped) Wait reads the
// state, then runs probe with its own spec.Timeout. The zero durations of spec take their
// defaults (Spec.WithDefaults).
//
// A unit that is activating (not auto-restarting) is not healthy yet: no check runs and the
// streak does not start until it is active. That is how a notify service's READY=1 counts: a Type=notify
// unit stays activating until the service sends it, so its probe (if any) only starts to
// count from then. A nil probe leaves the decision to the unit state alone: active, without
// a restart, for MinHealthyTime. A nil state leaves it to the probe alone.
//
// Outcomes:
//   - Healthy: Result.Healthy, nil error.
//   - A check fails: the streak starts over at the next passing check (a flapping instance
//     must pass MinHealthyTime after its last failure).
//   - The unit restarted, failed, is stopped or waits to be restarted: Result.Reason says
//     so, at once, nil error.
//   - The deadline passes first: Result.Reason says the deadline and the last check's
//     error, or how long it had been healthy; nil error. A check cut short by the deadline
//     is not counted.
//   - state returns an error: that error, wrapped; the instance is not healthy.
//   - ctx is cancelled: context.Cause(ctx), wrapped, and Result.Reason says it stopped.
func Wait(ctx context.Context, spec Spec, probe Probe, state func(ctx context.Context) (UnitState, error)) (Result, error) {
	spec = spec.WithDefaults()
	w := &waiter{spec: spec, probe: probe, state: state, start: time.Now()}
	dctx, cancel := context.WithDeadlineCause(ctx, w.start.Add(spec.HealthyDeadline), errDeadline)
	defer cancel()
	return w.run(ctx, dctx)
}

// waiter is one Wait under way.
type waiter struct {
	spec  Spec
	probe Probe
	state func(ctx context.Context) (UnitState, error)
	start time.Time

	res        Result
	base       *UnitState // the first observation
	since      time.Time  // Since of the first active observation
	streak     time.Time  // start of the current run of passing checks; zero: none
	lastFailed bool       // the most recent check or observation failed
}

func (w *waiter) run(ctx, dctx context.Context) (Result, error) {
	next := w.start
	for {
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-dctx.Done():
				t.Stop()
			}
		}
		if dctx.Err() != nil {
			return w.stopped(ctx)
		}
		begin := time.Now()
		next = begin.Add(w.spec.Interval)

		up, end, res, err := w.observed(ctx, dctx)
		if end {
			return res, err
		}
		if !up {
			continue
		}

		if w.probe != nil {
			pctx, pcancel := context.WithTimeout(dctx, w.spec.Timeout)
			err := w.probe.Check(pctx)
			pcancel()
			if dctx.Err() != nil {
				return w.stopped(ctx) // cut short: says nothing of the instance
			}
			w.res.Checks++
			if err != nil {
				w.fail(err.Error())
				continue
			}
		}
		w.lastFailed = false
		if w.streak.IsZero() {
			w.streak = begin
		}
		if time.Since(w.streak) < w.spec.MinHealthyTime {
			continue
		}
		// Healthy for long enough: confirm the unit has not moved during the last check.
		up, end, res, err = w.observed(ctx, dctx)
		if end {
			return res, err
		}
		if up {
			return w.done(true), nil
		}
	}
}

// observed observes the unit (observe) and says whether that ends the wait, with the
// outcome: the deadline or ctx stopped it, the state could not be read, or the unit
// restarted or went down. Otherwise the wait goes on, and up says whether the unit is up.
func (w *waiter) observed(ctx, dctx context.Context) (up, end bool, res Result, err error) {
	up, err = w.observe(dctx)
	switch {
	case dctx.Err() != nil:
		res, err = w.stopped(ctx)
		return up, true, res, err
	case err != nil:
		w.res.Reason = err.Error()
		return up, true, w.done(false), fmt.Errorf("wait for healthy: %w", err)
	case w.res.Reason != "":
		return up, true, w.done(false), nil
	}
	return up, false, Result{}, nil
}

// observe reads the unit's state. It returns up when the unit is active and has not
// restarted; sets Result.Reason when the unit restarted or is down, which ends the wait; and
// notes a unit still starting as a failed observation. A nil state func is always up.
func (w *waiter) observe(ctx context.Context) (up bool, err error) {
	if w.state == nil {
		return true, nil
	}
	st, err := w.state(ctx)
	if err != nil {
		return false, fmt.Errorf("read unit state: %w", err)
	}
	if w.base == nil {
		w.base = &st
	}
	if r := w.restarted(st); r != "" {
		w.res.Reason = "unit restarted (" + r + ")"
		return false, nil
	}
	switch {
	case st.Active():
		return true, nil
	case st.starting():
		w.fail("unit still starting (" + st.describe() + ")")
		return false, nil
	case strings.HasPrefix(st.SubState, "auto-restart"):
		w.res.Reason = "unit exited and waits to be restarted (" + st.describe() + ")"
	case st.ActiveState == "failed":
		w.res.Reason = "unit failed (" + st.describe() + ")"
	default:
		w.res.Reason = "unit not active (" + st.describe() + ")"
	}
	return false, nil
}

// restarted compares st with the first observation and says what shows a restart, or "".
// A MainPID first seen as zero (the unit was starting) is taken from st. Since is compared
// only between active observations: while a unit is activating, ActiveEnterTimestamp still
// holds its previous activation's time.
func (w *waiter) restarted(st UnitState) string {
	b := w.base
	switch {
	case st.NRestarts != b.NRestarts:
		return fmt.Sprintf("NRestarts %d → %d", b.NRestarts, st.NRestarts)
	case b.MainPID != 0 && st.MainPID != 0 && st.MainPID != b.MainPID:
		return fmt.Sprintf("MainPID %d → %d", b.MainPID, st.MainPID)
	case st.Active() && !w.since.IsZero() && !st.Since.IsZero() && !st.Since.Equal(w.since):
		const layout = "15:04:05.000"
		return fmt.Sprintf("active since %s → %s", w.since.Format(layout), st.Since.Format(layout))
	}
	if b.MainPID == 0 {
		b.MainPID = st.MainPID
	}
	if st.Active() && w.since.IsZero() {
		w.since = st.Since
	}
	return ""
}

// fail records a failed check or observation: the streak starts over.
func (w *waiter) fail(msg string) {
	w.res.LastError = msg
	w.lastFailed = true
	w.streak = time.Time{}
}

// stopped ends a wait whose context is done: the deadline passed, or ctx was cancelled.
func (w *waiter) stopped(ctx context.Context) (Result, error) {
	if err := ctx.Err(); err != nil {
		cause := context.Cause(ctx)
		w.res.Reason = "stopped: " + cause.Error()
		return w.done(false), fmt.Errorf("wait for healthy: %w", cause)
	}
	deadline := fmt.Sprintf("deadline %v passed", w.spec.HealthyDeadline)
	switch {
	case w.lastFailed:
		w.res.Reason = deadline + ": last check: " + w.res.LastError
	case !w.streak.IsZero():
		w.res.Reason = fmt.Sprintf("%s: healthy for %v of min_healthy_time %v", deadline,
			time.Since(w.streak).Round(time.Millisecond), w.spec.MinHealthyTime)
		if w.res.LastError != "" {
			w.res.Reason += "; last failure: " + w.res.LastError
		}
	default:
		w.res.Reason = deadline + " before a check completed"
	}
	return w.done(false), nil
}

func (w *waiter) done(healthy bool) Result {
	w.res.Healthy = healthy
	w.res.Took = time.Since(w.start)
	if healthy {
		w.res.Reason = ""
	}
	return w.res
}

// Instance is one instance for WaitAll: Wait's arguments, and a name for the report.
type Instance struct {
	Name  string // the unit, e.g. "pushdeploy-web-web@2.service"
	Spec  Spec
	Probe Probe
	State func(ctx context.Context) (UnitState, error)
}

// InstanceResult is Wait's outcome for one Instance.
type InstanceResult struct {
	Name string
	Result
	// Err is Wait's error: the state could not be read, or the wait was stopped (with
	// failFast, wrapping ErrBatchFailed).
	Err error
}

// OK reports whether the instance became healthy.
func (r InstanceResult) OK() bool { return r.Err == nil && r.Healthy }

// ErrBatchFailed is the cause WaitAll stops the other instances' waits with when one
// instance failed and the caller asked to fail fast.
var ErrBatchFailed = errors.New("another instance of the batch failed")

// WaitAll waits for every instance in parallel, one goroutine each, and returns their
// results in the order of instances; every goroutine has ended when it returns.
//
// Without failFast it returns once every instance has its verdict, so the caller can report
// each. With failFast, the first instance that is not healthy stops the waits of the others,
// whose Err then wraps ErrBatchFailed (naming the failed instance), and WaitAll returns as
// soon as they have stopped: a rollout that halts at the first unhealthy instance need not
// wait out the others' deadlines before it reverts. Cancelling ctx stops every wait.
func WaitAll(ctx context.Context, instances []Instance, failFast bool) []InstanceResult {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	results := make([]InstanceResult, len(instances))
	var wg sync.WaitGroup
	for i, in := range instances {
		wg.Go(func() {
			res, err := Wait(ctx, in.Spec, in.Probe, in.State)
			results[i] = InstanceResult{Name: in.Name, Result: res, Err: err}
			if failFast && !results[i].OK() {
				// The first cause wins: a wait stopped by it calls this again to no effect.
				cancel(fmt.Errorf("%w: %s: %s", ErrBatchFailed, in.Name, res.Reason))
			}
		})
	}
	wg.Wait()
	return results
}
