package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DefaultSettle is how long an instance must stay active after its start job when
// Engine.Settle is zero. A start job reports "done" as soon as the program is executed,
// so a program that exits at once (a bad flag, a port in use) is only caught by watching
// the unit a moment longer.
const DefaultSettle = time.Second

// DefaultPoll is how often an instance's state is read while it settles, when Engine.Poll
// is zero.
const DefaultPoll = 100 * time.Millisecond

// JournalLines is how many of a failed instance's last journal lines its error carries.
const JournalLines = 10

// Engine rolls an app's instances over through a service manager: deploys, rollbacks,
// restarts and configuration changes are all Plans it runs, with one revert path. It keeps
// no state between calls: what an app has installed is the Installed value the caller
// stores and passes back, so one Engine serves every app.
type Engine struct {
	Manager Manager
	// Settle is how long an instance must stay active after its start job to count as
	// started; zero means DefaultSettle.
	Settle time.Duration
	// Poll is how often a settling instance's state is read; zero means DefaultPoll.
	Poll time.Duration
	// Progress, when set, is told as each batch starts, rolling out or reverting: for a
	// status display, and for a watchdog that tells a long rollout from a stuck one. It is
	// called on the rollout's goroutine and must return at once.
	Progress func(Step)
	// Redact, when set, masks the app's secrets in what the engine quotes of the app's own
	// output: journal lines and health check answers, in its errors. An app that fails
	// often prints its configuration, and these errors travel to records, logs, GitHub and
	// notifications.
	Redact func(string) string
}

// redact is Redact applied to text, or text as is.
func (e *Engine) redact(text string) string {
	if e.Redact == nil {
		return text
	}
	return e.Redact(text)
}

// journal reads unit's last JournalLines lines, masked by Redact: the one way the engine
// reads what an instance printed.
func (e *Engine) journal(ctx context.Context, unit string) ([]string, error) {
	lines, err := e.Manager.Journal(ctx, unit, JournalLines)
	for i := range lines {
		lines[i] = e.redact(lines[i])
	}
	return lines, err
}

// Step is a batch about to start, as Engine.Progress is told of it.
type Step struct {
	App string
	// Batch is the batch's place, from 1, among the Of batches of the rollout, or of the
	// revert when Revert is set (the failed batch is reverted first).
	Batch, Of int
	Revert    bool
}

func (e *Engine) progress(s Step) {
	if e.Progress != nil {
		e.Progress(s)
	}
}

// Installed is what is installed for an app. The caller stores it (as JSON) between deploys
// and passes it back, so the next deploy knows what to replace, stop and remove, and what to
// put back if it fails.
type Installed struct {
	// Files are the name (relative to the unit directory) and content of every file written
	// for the app.
	Files []File `json:"files"`
	// Instances are the instance unit names, in start order.
	Instances []string `json:"instances"`
	Target    string   `json:"target"`
}

// Deploy installs next's files, replacing prev (nil on the first deploy), and starts or
// restarts every instance, batch after batch as p says. The instances of a batch restart
// together, each drained first when p has a Rotation; each counts as started when its start
// job is done and it then stays active, without being restarted by the manager, for Settle.
// Once all of a batch have started, p.Check decides on the batch, it goes back in rotation,
// and only then does the next batch start.
//
// Outcomes:
//   - Success: every instance runs the new units; instances prev had and next does not are
//     drained and stopped, and units next dropped are removed; the target is enabled and
//     started. It returns next.
//   - A batch fails (an instance does not start: the error wraps an *InstanceError naming
//     it, its state and its last journal lines; or p.Check's error): the error names the
//     batch. Deploy calls p.PutBack, puts prev's files back byte for byte (and removes the
//     files prev did not have), stops the instances it started that prev did not have,
//     and restarts on the old units every instance it had touched that prev had, the failed
//     batch first and then the earlier ones in reverse order, each batch checked by
//     p.RevertCheck before the next. It returns prev. On a first deploy it stops what it
//     started, removes the files and returns nil.
//   - A batch fails and p.NoRevert holds one of its instances: the rollout halts; the files
//     stay the new ones, the touched instances keep running the new units, the others
//     keep their running processes, and it returns the new files with the instances of
//     both, so the next Deploy replaces or stops every one. The error says so.
//   - Putting prev back fails too: the error says both, and the returned Installed lists
//     every file and instance that may still be present, so a later Deploy or Remove
//     cleans them up. A reverted batch that p.RevertCheck finds unhealthy is reported in
//     the error too; it runs prev's units, so prev is returned.
//   - The instances run but stopping dropped instances or enabling the target fails: next
//     and an error.
//
// Cancelling ctx abandons the rollout at the next job or check, and prev is put back as on
// a failure. Putting prev back, and the steps after the last instance has started, run
// without ctx's cancellation, bounded by the manager's own start and stop timeouts and the
// health checks' deadlines, so a deploy interrupted by a shutdown never leaves the host
// half-way.
func (e *Engine) Deploy(ctx context.Context, p *Plan, next, prev *Installed) (*Installed, error) {
	next = next.clone()
	if err := next.check(); err != nil {
		return prev, fmt.Errorf("deploy units of %s: %w", p.App, err)
	}
	if err := p.check(next.Instances); err != nil {
		return prev, fmt.Errorf("deploy units of %s: %w", p.App, err)
	}
	if prev == nil {
		prev = &Installed{}
	} else if err := prev.check(); err != nil {
		return prev, fmt.Errorf("deploy units of %s: previous units: %w", p.App, err)
	}
	defer e.restore(ctx, p)
	first := len(prev.Files) == 0

	if err := e.Manager.Install(ctx, next.Files, dropped(prev.Files, next.Files)); err != nil {
		return e.revert(ctx, p, prev, next, nil, err)
	}
	done, failed, err := e.roll(ctx, p)
	if err != nil {
		if failed != nil && p.halts(failed) && ctx.Err() == nil {
			return halt(p, prev, next, done, err)
		}
		return e.revert(ctx, p, prev, next, done, err)
	}

	// Every instance runs the new release: there is no going back, so the rest runs to its
	// end even if ctx is cancelled now. Retire what the release dropped, enable the target.
	ctx = context.WithoutCancel(ctx)
	var gone []string
	for _, unit := range prev.Instances {
		if !slices.Contains(next.Instances, unit) {
			gone = append(gone, unit)
		}
	}
	errs := []error{e.retire(ctx, p, gone)}
	if prev.Target != "" && prev.Target != next.Target {
		errs = append(errs, e.Manager.Stop(ctx, prev.Target), e.Manager.Disable(ctx, prev.Target))
	}
	errs = append(errs, e.Manager.Install(ctx, nil, dropped(prev.Files, next.Files)),
		e.Manager.Enable(ctx, next.Target), e.Manager.Start(ctx, next.Target))
	if err := errors.Join(errs...); err != nil {
		return next, fmt.Errorf("deploy units of %s: %w", p.App, err)
	}
	p.Log.Info().Int("instances", len(next.Instances)).Bool("first", first).Msg("units deployed")
	return next, nil
}

// Restart restarts p's batches with the units already installed and no file written: a
// rolling restart of the running release, or of it on a changed environment file. Each
// batch is drained, restarted, checked by p.Check and put back in rotation; the next batch
// starts only when the current one is healthy. Every instance of p must be installed.
//
// Outcomes: nil when every batch restarted and was healthy. When a batch fails and p has a
// PutBack (what changed besides the units, such as the environment file), it takes the
// revert path of Deploy: PutBack, then every batch restarted so far restarts again, the
// failed one first, each checked by p.RevertCheck; the error says whether they are
// healthy, and is a *RevertedError when they are. Without PutBack there is nothing to put back: the rollout halts and the error
// says the later batches were not restarted. Cancelling ctx stops before the next batch.
func (e *Engine) Restart(ctx context.Context, p *Plan) error {
	defer e.restore(ctx, p)
	done, failed, err := e.roll(ctx, p)
	if err == nil {
		p.Log.Info().Int("batches", len(p.Batches)).Msg("units restarted")
		return nil
	}
	err = fmt.Errorf("restart units of %s: %w", p.App, err)
	if p.PutBack == nil || (failed != nil && p.halts(failed)) {
		return &HaltedError{Cause: err, Why: "restart halted, later batches not restarted"}
	}
	ctx = context.WithoutCancel(ctx)
	p.Log.Warn().Msg("restart failed, putting the previous state back")
	var errs []error
	if perr := p.PutBack(ctx); perr != nil {
		return errors.Join(err, fmt.Errorf("put back: %w", perr))
	}
	rerrs, sick := e.revertBatches(ctx, p, done, func(string) bool { return true })
	errs = append(errs, rerrs...)
	if len(errs) > 0 || len(sick) > 0 {
		return errors.Join(err, errors.Join(errs...), unhealthy("previous state", sick))
	}
	return &RevertedError{Cause: err, Batches: len(done)}
}

// RevertedError is a failed Restart that was put back whole: PutBack restored what changed,
// and every batch restarted so far restarted on it and was found healthy.
type RevertedError struct {
	Cause error
	// Batches is how many batches restarted on what was put back.
	Batches int
}

func (e *RevertedError) Error() string {
	return fmt.Sprintf("%v; put back, %d batch(es) restarted on it and healthy", e.Cause, e.Batches)
}

func (e *RevertedError) Unwrap() error { return e.Cause }

// Remove stops everything prev installed, disables its target and removes its files, for
// an app removed from the configuration or a release that runs no services. Instances are
// drained first when p has a Rotation. It carries on past errors, so as much as possible is
// gone, and returns them all. A nil prev has nothing to remove.
func (e *Engine) Remove(ctx context.Context, p *Plan, prev *Installed) error {
	if prev == nil {
		return nil
	}
	if err := prev.check(); err != nil {
		return fmt.Errorf("remove units of %s: %w", p.App, err)
	}
	defer e.restore(ctx, p)
	var errs []error
	if prev.Target != "" {
		errs = append(errs, e.Manager.Stop(ctx, prev.Target))
	}
	last := slices.Clone(prev.Instances) // stopped in reverse start order
	slices.Reverse(last)
	errs = append(errs, e.retire(ctx, p, last))
	if prev.Target != "" {
		errs = append(errs, e.Manager.Disable(ctx, prev.Target))
	}
	errs = append(errs, e.Manager.Install(ctx, nil, names(prev.Files)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove units of %s: %w", p.App, err)
	}
	p.Log.Info().Str("target", prev.Target).Msg("units removed")
	return nil
}

// roll runs p's batches in order. It returns the batches it (re)started, the failed one
// last, and with the failure, the batch whose restart or check failed (nil when a drain
// failed or ctx ended between batches).
func (e *Engine) roll(ctx context.Context, p *Plan) (done [][]string, failed []string, err error) {
	for i, batch := range p.Batches {
		if err := context.Cause(ctx); err != nil {
			return done, nil, fmt.Errorf("stopped before batch %d of %d: %w", i+1, len(p.Batches), err)
		}
		p.Log.Info().Int("batch", i+1).Int("of", len(p.Batches)).Strs("instances", batch).Msg("batch started")
		e.progress(Step{App: p.App, Batch: i + 1, Of: len(p.Batches)})
		if p.Rotation != nil {
			if err := p.Rotation.Drain(ctx, batch); err != nil {
				return done, nil, fmt.Errorf("batch %d of %d: drain: %w", i+1, len(p.Batches), err)
			}
		}
		done = append(done, batch)
		if err := e.rollBatch(ctx, p, batch, p.Check); err != nil {
			return done, batch, fmt.Errorf("batch %d of %d: %w", i+1, len(p.Batches), err)
		}
		p.Log.Info().Int("batch", i+1).Int("of", len(p.Batches)).Strs("instances", batch).Msg("batch healthy")
	}
	return done, nil, nil
}

// revert handles a failed deploy: it puts prev back and returns what is installed then,
// with cause (and whatever failed while putting prev back). done are the batches the deploy
// started or restarted, the failed one last.
func (e *Engine) revert(ctx context.Context, p *Plan, prev, next *Installed, done [][]string, cause error) (*Installed, error) {
	ctx = context.WithoutCancel(ctx)
	p.Log.Warn().Msg("deploy failed, putting previous units back")
	var errs []error
	if p.PutBack != nil {
		if err := p.PutBack(ctx); err != nil {
			errs = append(errs, fmt.Errorf("put back: %w", err))
		}
	}
	var started []string // instances this deploy started that prev does not have
	for _, batch := range done {
		for _, unit := range batch {
			if !slices.Contains(prev.Instances, unit) {
				started = append(started, unit)
			}
		}
	}
	errs = append(errs, e.retire(ctx, p, started))
	if len(prev.Files) == 0 {
		errs = append(errs, e.Manager.Install(ctx, nil, names(next.Files)))
	} else {
		errs = append(errs, e.Manager.Install(ctx, prev.Files, dropped(next.Files, prev.Files)))
	}
	failed, sick := e.revertBatches(ctx, p, done, func(u string) bool { return slices.Contains(prev.Instances, u) })
	errs = append(errs, failed...)
	cause = fmt.Errorf("deploy units of %s: %w", p.App, cause)
	if err := errors.Join(errs...); err != nil {
		return union(prev, next), errors.Join(cause, fmt.Errorf("put previous units of %s back: %w", p.App, err), unhealthy("previous units of "+p.App, sick))
	}
	if err := unhealthy("previous units of "+p.App, sick); err != nil {
		cause = errors.Join(cause, err)
	} else if len(done) > 0 && len(prev.Files) > 0 {
		cause = fmt.Errorf("%w; previous units put back and healthy", cause)
	}
	if len(prev.Files) == 0 {
		return nil, cause
	}
	return prev, cause
}

// revertBatches is the one revert path: it restarts the instances of done for which keep
// says yes on what was put back, in reverse order (the failed batch first), each batch
// drained, checked by p.RevertCheck and put back in rotation before the next. A drain that
// fails is logged and the batch restarts anyway: the host must not stay on what failed. It
// returns the failures to restart and, apart, the batches found unhealthy.
func (e *Engine) revertBatches(ctx context.Context, p *Plan, done [][]string, keep func(string) bool) (failed, sick []error) {
	for i, batch := range slices.Backward(done) {
		back := slices.DeleteFunc(slices.Clone(batch), func(u string) bool { return !keep(u) })
		if len(back) == 0 {
			continue
		}
		p.Log.Info().Strs("instances", back).Msg("batch reverting")
		e.progress(Step{App: p.App, Batch: len(done) - i, Of: len(done), Revert: true})
		if p.Rotation != nil {
			if err := p.Rotation.Drain(ctx, back); err != nil {
				p.Log.Warn().Err(err).Strs("instances", back).Msg("drain failed, reverting anyway")
			}
		}
		err := e.rollBatch(ctx, p, back, p.RevertCheck)
		var he *healthError
		switch {
		case errors.As(err, &he):
			sick = append(sick, err)
		case err != nil:
			failed = append(failed, err)
		default:
			p.Log.Info().Strs("instances", back).Msg("batch reverted")
		}
	}
	return failed, sick
}

// retire drains, stops and retires (Rotation.Retire: maintenance in haproxy) instances that
// go away, one after another, carrying on past errors: a service removed from service.json,
// or instances scaled away. Drained first, an instance gets no new request and finishes
// those under way before it stops; one that does not stop stays drained, and Restore puts it
// back, since it still serves.
func (e *Engine) retire(ctx context.Context, p *Plan, instances []string) error {
	var errs []error
	for _, unit := range instances {
		if p.Rotation != nil {
			if err := p.Rotation.Drain(ctx, []string{unit}); err != nil {
				p.Log.Warn().Err(err).Str("unit", unit).Msg("drain failed, stopping anyway")
			}
		}
		p.Log.Info().Str("unit", unit).Msg("stop instance")
		err := e.Manager.Stop(ctx, unit)
		if err == nil && p.Rotation != nil {
			p.Rotation.Retire(ctx, []string{unit})
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// restore puts every instance the rollout drained back in rotation, even when ctx is
// cancelled: a failed, reverted, halted or interrupted rollout leaves no server out.
func (e *Engine) restore(ctx context.Context, p *Plan) {
	if p.Rotation != nil {
		p.Rotation.Restore(context.WithoutCancel(ctx))
	}
}

// halt ends a failed rollout without putting prev back (auto_revert off): the new files
// stay, the instances of done keep the new units, and what is installed is the new files
// with the instances of both, so the next Deploy replaces or stops every one.
func halt(p *Plan, prev, next *Installed, done [][]string, cause error) (*Installed, error) {
	var moved []string
	for _, b := range done {
		moved = append(moved, b...)
	}
	p.Log.Warn().Strs("instances", moved).Msg("deploy failed, rollout halted without revert")
	cur := next.clone()
	for _, u := range prev.Instances {
		if !slices.Contains(cur.Instances, u) {
			cur.Instances = append(cur.Instances, u)
		}
	}
	return cur, &HaltedError{Cause: fmt.Errorf("deploy units of %s: %w", p.App, cause),
		Why: fmt.Sprintf("auto_revert is off: rollout halted, not reverted: %s keep the new release's units", strings.Join(moved, ", "))}
}

// HaltedError is a failed rollout that stopped where it was, with nothing put back: a
// service's auto_revert is off, or a restart had nothing to put back.
type HaltedError struct {
	Cause error
	// Why says what was left where.
	Why string
}

func (e *HaltedError) Error() string { return e.Cause.Error() + "; " + e.Why }
func (e *HaltedError) Unwrap() error { return e.Cause }

// unhealthy reports reverted batches that did not become healthy, or nil; what says what
// they were put back on.
func unhealthy(what string, sick []error) error {
	if len(sick) == 0 {
		return nil
	}
	return fmt.Errorf("%s put back, but not healthy: %w", what, errors.Join(sick...))
}
