package units

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// settlePoll is how often an instance's state is read while it settles.
const settlePoll = 100 * time.Millisecond

// InstanceError is why an instance did not start: its start job failed, or the unit did not
// stay active for Installer.Settle afterwards.
type InstanceError struct {
	Unit string
	Op   string // "start" or "restart"
	// Job is the start job's result ("done", "failed", "timeout", "dependency", …).
	Job string
	// After is how long after the job the unit was seen not active; zero when the job
	// itself failed.
	After time.Duration
	// Restarts is how often systemd restarted the unit after its start job.
	Restarts uint32
	// ActiveState, SubState and Result are the unit's state when it was given up on, as
	// `systemctl status` shows them ("failed", "failed", "exit-code").
	ActiveState, SubState, Result string
	// Journal holds the unit's last output lines, oldest first.
	Journal []string
}

func (e *InstanceError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Op, e.Unit)
	switch {
	case e.Job != "done":
		fmt.Fprintf(&b, "start job %s", e.Job)
	case e.Restarts > 0:
		fmt.Fprintf(&b, "exited and was restarted by systemd within %v of its start", e.After.Round(time.Millisecond))
	default:
		fmt.Fprintf(&b, "not active %v after its start", e.After.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, " (ActiveState %s, SubState %s, Result %s)", e.ActiveState, e.SubState, e.Result)
	if len(e.Journal) == 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "; last %d journal lines:", len(e.Journal))
	for _, l := range e.Journal {
		b.WriteString("\n    " + l)
	}
	return b.String()
}

// startInstance starts unit, or restarts it when it runs, and waits until it has started:
// the job is done and the unit then stays active, and is not restarted, for Settle. A failed
// state and the start limit are reset first: a deploy is a deliberate start, which an
// earlier crash loop or a quick series of deploys must not block.
func (in *Installer) startInstance(ctx context.Context, unit string) error {
	state, err := in.unitProperty(ctx, unit, "ActiveState")
	if err != nil {
		return err
	}
	op, f := "start", in.Conn.StartUnitContext
	switch state {
	case "active", "reloading", "activating":
		op, f = "restart", in.Conn.RestartUnitContext
	}
	if err := in.resetFailed(ctx, unit); err != nil {
		return err
	}
	in.log(op+" instance", "unit", unit, "state", state)
	begin := time.Now()
	ch := make(chan string, 1) // buffered: go-systemd sends while holding its job lock
	if _, err := f(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", op, unit, err)
	}
	var result string
	select {
	case result = <-ch:
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", op, unit, context.Cause(ctx))
	}
	if result != "done" {
		return in.instanceError(ctx, &InstanceError{Unit: unit, Op: op, Job: result})
	}
	jobDone := time.Now()
	settle := in.Settle
	if settle <= 0 {
		settle = DefaultSettle
	}
	var base uint32
	for first := true; ; first = false {
		state, err := in.unitProperty(ctx, unit, "ActiveState")
		if err != nil {
			return err
		}
		restarts, err := in.restarts(ctx, unit)
		if err != nil {
			return err
		}
		if first {
			base = restarts
		}
		if state != "active" || restarts != base {
			return in.instanceError(ctx, &InstanceError{Unit: unit, Op: op, Job: result,
				After: time.Since(jobDone), Restarts: restarts - base})
		}
		left := settle - time.Since(jobDone)
		if left <= 0 {
			break
		}
		select {
		case <-time.After(min(left, settlePoll)):
		case <-ctx.Done():
			return fmt.Errorf("%s %s: %w", op, unit, context.Cause(ctx))
		}
	}
	in.log("instance started", "unit", unit, "op", op,
		"job", jobDone.Sub(begin).String(), "settled", time.Since(jobDone).String())
	return nil
}

// instanceError completes e with the unit's state and journal.
func (in *Installer) instanceError(ctx context.Context, e *InstanceError) error {
	e.ActiveState, _ = in.unitProperty(ctx, e.Unit, "ActiveState")
	e.SubState, _ = in.unitProperty(ctx, e.Unit, "SubState")
	if p, err := in.Conn.GetServicePropertyContext(ctx, e.Unit, "Result"); err == nil {
		e.Result, _ = p.Value.Value().(string)
	}
	if in.Journal != nil {
		e.Journal = in.Journal(ctx, e.Unit, journalLines)
	}
	return e
}

// stop stops unit, waits for it, and resets its failed state, so a unit whose file is gone
// leaves nothing in the manager. A unit the manager does not know is stopped already.
func (in *Installer) stop(ctx context.Context, unit string) error {
	in.log("stop unit", "unit", unit)
	if err := in.job(ctx, "stop", in.Conn.StopUnitContext, unit); err != nil && !noSuchUnit(err) {
		return err
	}
	return in.resetFailed(ctx, unit)
}

// disable removes the symlinks that enable unit.
func (in *Installer) disable(ctx context.Context, unit string) error {
	if _, err := in.Conn.DisableUnitFilesContext(ctx, []string{unit}, false); err != nil {
		return fmt.Errorf("disable %s: %w", unit, err)
	}
	return nil
}

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// job queues one job for unit and waits for its result, which must be "done".
func (in *Installer) job(ctx context.Context, what string, f jobFunc, unit string) error {
	ch := make(chan string, 1) // buffered: go-systemd sends while holding its job lock
	if _, err := f(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", what, unit, err)
	}
	select {
	case r := <-ch:
		if r != "done" {
			return fmt.Errorf("%s %s: job %s", what, unit, r)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", what, unit, context.Cause(ctx))
	}
}

// resetFailed resets unit's failed state and start limit; a unit not loaded has neither.
func (in *Installer) resetFailed(ctx context.Context, unit string) error {
	if err := in.Conn.ResetFailedUnitContext(ctx, unit); err != nil && !noSuchUnit(err) {
		return fmt.Errorf("reset failed state of %s: %w", unit, err)
	}
	return nil
}

func (in *Installer) unitProperty(ctx context.Context, unit, name string) (string, error) {
	p, err := in.Conn.GetUnitPropertyContext(ctx, unit, name)
	if err != nil {
		return "", fmt.Errorf("read %s of %s: %w", name, unit, err)
	}
	s, _ := p.Value.Value().(string)
	return s, nil
}

func (in *Installer) restarts(ctx context.Context, unit string) (uint32, error) {
	p, err := in.Conn.GetServicePropertyContext(ctx, unit, "NRestarts")
	if err != nil {
		return 0, fmt.Errorf("read NRestarts of %s: %w", unit, err)
	}
	n, _ := p.Value.Value().(uint32)
	return n, nil
}

// noSuchUnit reports whether err is systemd's answer for a unit it has not loaded.
func noSuchUnit(err error) bool {
	var e dbus.Error // godbus returns a method's error by value
	return errors.As(err, &e) && e.Name == "org.freedesktop.systemd1.NoSuchUnit"
}
