package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/health"
	"github.com/pushdeploy/pushdeploy/units"
)

// Manager is the service manager an Engine drives: systemd over D-Bus on a host (package
// rollout/systemd), a fake in table tests. Each method acts on one unit and returns once the
// manager has done it (its job has a result), so the engine alone decides the order.
type Manager interface {
	// Install writes files into the manager's unit directory, each atomically, deletes the
	// named files (and a drop-in directory they leave empty), and reloads the manager.
	Install(ctx context.Context, files []units.File, remove []string) error
	// Start starts unit; Restart restarts it. Both reset the unit's failed state and start
	// limit first (a deploy is a deliberate start that an earlier crash loop must not
	// block) and wait for the job: a result other than "done" is a *JobError.
	Start(ctx context.Context, unit string) error
	Restart(ctx context.Context, unit string) error
	// Stop stops unit, waits for it and resets its failed state, so a unit whose file is
	// gone leaves nothing behind; a unit the manager does not know is stopped already.
	Stop(ctx context.Context, unit string) error
	// Enable enables target (installed by Install) so it starts at boot; Disable undoes it.
	Enable(ctx context.Context, target string) error
	Disable(ctx context.Context, target string) error
	// State reads what the engine and the health checks watch of unit.
	State(ctx context.Context, unit string) (UnitState, error)
	// Journal returns unit's last n output lines, oldest first, for error messages.
	Journal(ctx context.Context, unit string, n int) ([]string, error)
}

// UnitState is what the manager says of a unit (see health.UnitState).
type UnitState = health.UnitState

// JobError is a start, restart or stop job whose result is not "done".
type JobError struct {
	Op, Unit string
	// Result is the job's result: "failed", "timeout", "dependency", "canceled", …
	Result string
}

func (e *JobError) Error() string { return fmt.Sprintf("%s %s: job %s", e.Op, e.Unit, e.Result) }

// InstanceError is why an instance did not start: its start job failed, or the unit did not
// stay active for Engine.Settle afterwards.
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
	b.WriteString(journalQuote(e.Journal))
	return b.String()
}

// journalQuote is the "; last N journal lines:" part of an error, or "" when there are no
// lines: an error never promises a quote it does not carry.
func journalQuote(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return fmt.Sprintf("; last %d journal lines:\n    %s", len(lines), strings.Join(lines, "\n    "))
}
