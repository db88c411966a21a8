package units

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Batches lists the batches in which a deploy of spec restarts app's instances, for
// Installer.Batches: service by service (in the order of Instances), each service's
// rollout.canary instances first, then the rest, both in batches of at most
// rollout.Parallel(instances), so no more than max_parallel instances of a service are
// ever out of rotation at once. A canary of 3 with max_parallel 2 over 6 instances gives
// [1 2] [3] [4 5] [6]: the canaries are all healthy before the rest begins.
func Batches(spec *Spec, app string) [][]string {
	var out [][]string
	for _, name := range sortedKeys(spec.Services) {
		s := spec.Services[name]
		p := s.Rollout.Parallel(s.Instances)
		canary := min(max(s.Rollout.Canary, 0), s.Instances)
		chunk := func(from, to int) {
			for i := from; i <= to; i += p {
				var b []string
				for n := i; n <= min(i+p-1, to); n++ {
					b = append(b, UnitName(app, name, n))
				}
				out = append(out, b)
			}
		}
		chunk(1, canary)
		chunk(canary+1, s.Instances)
	}
	return out
}

// batches splits instances with in.Batches, one at a time when it is nil, and checks that
// every instance is in exactly one batch.
func (in *Installer) batches(instances []string) ([][]string, error) {
	if in.Batches == nil {
		out := make([][]string, len(instances))
		for i, u := range instances {
			out[i] = []string{u}
		}
		return out, nil
	}
	out := in.Batches(slices.Clone(instances))
	seen := map[string]bool{}
	for _, b := range out {
		if len(b) == 0 {
			return nil, errors.New("rollout batches: empty batch")
		}
		for _, u := range b {
			if seen[u] || !slices.Contains(instances, u) {
				return nil, fmt.Errorf("rollout batches: %s is not an instance, or is in two batches", u)
			}
			seen[u] = true
		}
	}
	if len(seen) != len(instances) {
		return nil, fmt.Errorf("rollout batches: %d of %d instances in no batch", len(instances)-len(seen), len(instances))
	}
	return out, nil
}

// before calls BeforeBatch, when set, for batch.
func (in *Installer) before(ctx context.Context, batch []string) error {
	if in.BeforeBatch == nil {
		return nil
	}
	if err := in.BeforeBatch(ctx, slices.Clone(batch)); err != nil {
		return fmt.Errorf("before restart: %w", err)
	}
	return nil
}

// healthError is a batch that started but that its health hook found unhealthy.
type healthError struct{ err error }

func (e *healthError) Error() string { return "health check: " + e.err.Error() }
func (e *healthError) Unwrap() error { return e.err }

// rollBatch starts or restarts every instance of batch at once, waits until each has started
// (startInstance), then asks healthy (when set) about the batch. It returns the start
// failures, joined, or healthy's error as a *healthError.
func (in *Installer) rollBatch(ctx context.Context, batch []string, healthy func(context.Context, []string) error) error {
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for i, unit := range batch {
		wg.Go(func() { errs[i] = in.startInstance(ctx, unit) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if healthy == nil {
		return nil
	}
	if err := healthy(ctx, slices.Clone(batch)); err != nil {
		return &healthError{err}
	}
	return nil
}

// unhealthy reports reverted batches that did not become healthy, or nil.
func unhealthy(app string, sick []error) error {
	if len(sick) == 0 {
		return nil
	}
	return fmt.Errorf("previous units of %s put back, but not healthy: %w", app, errors.Join(sick...))
}

// halt ends a failed rollout without putting prev back (auto_revert off): the new files stay,
// the instances of done keep the new units, and what is installed is the new files with the
// instances of both, so the next Deploy replaces or stops every one.
func (in *Installer) halt(app string, prev, next *Installed, done [][]string, cause error) (*Installed, error) {
	var moved []string
	for _, b := range done {
		moved = append(moved, b...)
	}
	in.log("deploy failed, rollout halted without revert", "app", app, "error", cause.Error(), "instances", moved)
	cur := &Installed{Files: slices.Clone(next.Files), Instances: slices.Clone(next.Instances), Target: next.Target}
	for _, u := range prev.Instances {
		if !slices.Contains(cur.Instances, u) {
			cur.Instances = append(cur.Instances, u)
		}
	}
	return cur, fmt.Errorf("deploy units of %s: %w; auto_revert is off: rollout halted, not reverted: %s keep the new release's units",
		app, cause, strings.Join(moved, ", "))
}

// Restart restarts app's instances batch after batch, with the units already installed and
// no file written: a rolling restart of the running release. Each batch goes through
// BeforeBatch, its restart (as in Deploy) and Healthy; the next batch starts only when the
// current one is healthy. Every instance of batches must be installed.
//
// Outcomes: nil when every batch restarted and was healthy; otherwise an error naming the
// failed batch (wrapping an *InstanceError or the health hook's error) and saying that the
// later batches were not restarted. Nothing is put back: every instance runs the same
// units as before. Cancelling ctx stops before the next batch. It returns how many batches
// it (re)started, the failed one included, so that a caller that changed what the units
// read (an environment file) knows which to restart again once it is put back.
func (in *Installer) Restart(ctx context.Context, app string, batches [][]string) (int, error) {
	for i, batch := range batches {
		if err := context.Cause(ctx); err != nil {
			return i, fmt.Errorf("restart units of %s: stopped before batch %d of %d: %w", app, i+1, len(batches), err)
		}
		in.log("batch started", "app", app, "batch", i+1, "of", len(batches), "instances", batch)
		if err := in.before(ctx, batch); err != nil {
			return i, fmt.Errorf("restart units of %s: batch %d of %d: %w; restart halted, later batches not restarted", app, i+1, len(batches), err)
		}
		if err := in.rollBatch(ctx, batch, in.Healthy); err != nil {
			return i + 1, fmt.Errorf("restart units of %s: batch %d of %d: %w; restart halted, later batches not restarted", app, i+1, len(batches), err)
		}
		in.log("batch healthy", "app", app, "batch", i+1, "of", len(batches), "instances", batch)
	}
	in.log("units restarted", "app", app, "batches", len(batches))
	return len(batches), nil
}
