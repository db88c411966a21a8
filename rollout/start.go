package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// healthError is a batch that started but that its check found unhealthy.
type healthError struct{ err error }

func (e *healthError) Error() string { return "health check: " + e.err.Error() }
func (e *healthError) Unwrap() error { return e.err }

// rotationError is a batch found healthy that could not be put back in the load
// balancer's rotation (haproxy's admin socket gone): its instances serve, but the
// balancer may not send them traffic.
type rotationError struct{ err error }

func (e *rotationError) Error() string {
	return "healthy, but not put back in rotation: " + e.err.Error()
}
func (e *rotationError) Unwrap() error { return e.err }

// rollBatch starts or restarts every instance of batch at once, waits until each has
// started (startInstance), asks check (when set) about the batch, and puts it back in
// rotation. It returns the start failures, joined, check's error as a *healthError, or
// the rotation's as a *rotationError.
func (e *Engine) rollBatch(ctx context.Context, p *Plan, batch []string, check CheckFunc) error {
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for i, unit := range batch {
		wg.Go(func() { errs[i] = e.startInstance(ctx, p, unit) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if check != nil {
		if err := check(ctx, slices.Clone(batch)); err != nil {
			return &healthError{err}
		}
	}
	if p.Rotation != nil {
		if err := p.Rotation.Ready(ctx, batch); err != nil {
			return &rotationError{err}
		}
	}
	return nil
}

// startInstance starts unit, or restarts it when it runs, and waits until it has started:
// the job is done and the unit then stays active, and is not restarted, for Settle.
func (e *Engine) startInstance(ctx context.Context, p *Plan, unit string) error {
	st, err := e.Manager.State(ctx, unit)
	if err != nil {
		return err
	}
	op, f := "start", e.Manager.Start
	switch st.ActiveState {
	case "active", "reloading", "activating":
		op, f = "restart", e.Manager.Restart
	}
	p.Log.Info().Str("unit", unit).Str("state", st.ActiveState).Msg(op + " instance")
	begin := time.Now()
	if err := f(ctx, unit); err != nil {
		if je, ok := errors.AsType[*JobError](err); ok {
			return e.instanceError(ctx, &InstanceError{Unit: unit, Op: op, Job: je.Result})
		}
		return err
	}
	jobDone := time.Now()
	settle, poll := e.Settle, e.Poll
	if settle <= 0 {
		settle = DefaultSettle
	}
	if poll <= 0 {
		poll = DefaultPoll
	}
	var base uint32
	for first := true; ; first = false {
		st, err := e.Manager.State(ctx, unit)
		if err != nil {
			return err
		}
		if first {
			base = st.NRestarts
		}
		if st.ActiveState != "active" || st.NRestarts != base {
			return e.instanceError(ctx, &InstanceError{Unit: unit, Op: op, Job: "done",
				After: time.Since(jobDone), Restarts: st.NRestarts - base})
		}
		left := settle - time.Since(jobDone)
		if left <= 0 {
			break
		}
		select {
		case <-time.After(min(left, poll)):
		case <-ctx.Done():
			return fmt.Errorf("%s %s: %w", op, unit, context.Cause(ctx))
		}
	}
	p.Log.Info().Str("unit", unit).Str("op", op).Dur("job", jobDone.Sub(begin)).
		Dur("settled", time.Since(jobDone)).Msg("instance started")
	return nil
}

// instanceError completes ie with the unit's state and last journal lines. It reads them
// without ctx's cancellation: a failure is reported whole even during a shutdown. When the
// state or the journal cannot be read, the error says so instead of leaving it out.
func (e *Engine) instanceError(ctx context.Context, ie *InstanceError) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	if st, err := e.Manager.State(ctx, ie.Unit); err != nil {
		errs = append(errs, err)
	} else {
		ie.ActiveState, ie.SubState, ie.Result = st.ActiveState, st.SubState, st.Result
	}
	lines, err := e.journal(ctx, ie.Unit)
	if err != nil {
		errs = append(errs, fmt.Errorf("read journal of %s: %w", ie.Unit, err))
	}
	ie.Journal = lines
	if len(errs) > 0 {
		return errors.Join(ie, errors.Join(errs...))
	}
	return ie
}
