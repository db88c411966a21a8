package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/units"
)

// Plan is one rollout of an app's instances: which restart together and in what order, how
// each side is checked, and what goes around each restart. Engine.Plan builds it from
// service.json; every field is set once, before the rollout starts.
type Plan struct {
	App string
	// Batches are the instances that restart together, in order: the next batch starts only
	// once the current one has started and is healthy, so no more instances are out of
	// rotation at once than the largest batch holds.
	Batches [][]string
	// Check decides whether a batch that (re)started and settled on the release rolled out is
	// healthy; RevertCheck does the same for a batch put back on the previous release. Nil
	// counts every settled instance healthy.
	Check, RevertCheck CheckFunc
	// NoRevert holds the instances whose service says rollout.auto_revert: false: a failed
	// batch holding one halts the rollout where it is instead of putting it back.
	NoRevert map[string]bool
	// Rotation, when set, takes a batch out of a load balancer's rotation before its
	// instances restart or stop, and puts it back once healthy.
	Rotation Rotation
	// PutBack, when set, restores what the previous release's instances read besides their
	// units (the environment file) before any instance restarts on it after a failure. Its
	// error is reported with the revert's, and the revert goes on.
	PutBack func(ctx context.Context) error
	// Log is told about every step.
	Log zerolog.Logger
}

// CheckFunc decides whether every instance of a batch is healthy; its error names the
// unhealthy ones and why.
type CheckFunc func(ctx context.Context, batch []string) error

// Rotation takes instances out of a load balancer's rotation around their restarts.
type Rotation interface {
	// Drain takes batch out of rotation and waits for its sessions; an error fails the
	// batch before anything restarts.
	Drain(ctx context.Context, batch []string) error
	// Ready puts batch back in rotation once it is healthy, and waits until the balancer
	// finds it up.
	Ready(ctx context.Context, batch []string) error
	// Retire says batch is gone (stopped for good): its servers go to maintenance and stay
	// there, and Restore leaves them. It cannot fail the rollout: the instances are stopped.
	Retire(ctx context.Context, batch []string)
	// Restore puts back every instance still drained and not retired, whatever happened.
	Restore(ctx context.Context)
}

// Batches lists the batches in which a rollout of spec restarts app's instances: service by
// service (in the order of units.Instances), each service's rollout.canary instances first,
// then the rest, both in batches of at most rollout.Parallel(instances), so no more than
// max_parallel instances of a service are ever out of rotation at once. A canary of 3 with
// max_parallel 2 over 6 instances gives [1 2] [3] [4 5] [6]: the canaries are all healthy
// before the rest begins. Batches never mix services.
func Batches(spec *units.Spec, app string) [][]string {
	var out [][]string
	for _, name := range slices.Sorted(maps.Keys(spec.Services)) {
		s := spec.Services[name]
		p := s.Rollout.Parallel(s.Instances)
		canary := min(max(s.Rollout.Canary, 0), s.Instances)
		chunk := func(from, to int) {
			for i := from; i <= to; i += p {
				var b []string
				for n := i; n <= min(i+p-1, to); n++ {
					b = append(b, units.UnitName(app, name, n))
				}
				out = append(out, b)
			}
		}
		chunk(1, canary)
		chunk(canary+1, s.Instances)
	}
	return out
}

// Only keeps the instances for which keep says yes, dropping batches left empty: a restart
// of one service, or of the instances installed.
func (p *Plan) Only(keep func(unit string) bool) {
	var out [][]string
	for _, b := range p.Batches {
		b = slices.DeleteFunc(slices.Clone(b), func(u string) bool { return !keep(u) })
		if len(b) > 0 {
			out = append(out, b)
		}
	}
	p.Batches = out
}

// check checks that every instance is in exactly one batch and that each batch holds
// some; a plan that does not would leave an instance on the old release or restart one
// twice.
func (p *Plan) check(instances []string) error {
	seen := map[string]bool{}
	for _, b := range p.Batches {
		if len(b) == 0 {
			return errors.New("rollout batches: empty batch")
		}
		for _, u := range b {
			if seen[u] || !slices.Contains(instances, u) {
				return fmt.Errorf("rollout batches: %s is not an instance, or is in two batches", u)
			}
			seen[u] = true
		}
	}
	if len(seen) != len(instances) {
		return fmt.Errorf("rollout batches: %d of %d instances in no batch", len(instances)-len(seen), len(instances))
	}
	return nil
}

// halts reports whether a failure of batch halts the rollout instead of reverting it.
func (p *Plan) halts(batch []string) bool {
	for _, u := range batch {
		if p.NoRevert[u] {
			return true
		}
	}
	return false
}

// noRevert lists the instances of spec's services whose rollout.auto_revert is off.
func noRevert(spec *units.Spec, app string) map[string]bool {
	out := map[string]bool{}
	for _, in := range units.InstancesOf(spec, app) {
		if !in.Service.Rollout.AutoRevert {
			out[in.Unit] = true
		}
	}
	return out
}

// Plan plans rolling out next over prev (nil when nothing runs before it): the batches of
// next's service.json, next's health checks for Check and prev's for RevertCheck, the
// instances whose service has auto_revert off, and, when ha is set, haproxy rotation
// around every restart and stop of either release's instances.
func (e *Engine) Plan(app string, next Release, prev *Release, ha *HAProxy, log zerolog.Logger) (*Plan, error) {
	p := &Plan{App: app, Batches: Batches(next.Spec, app), NoRevert: noRevert(next.Spec, app), Log: log}
	checks, err := e.checks(app, next)
	if err != nil {
		return nil, err
	}
	p.Check = e.checker(checks, next.short(), log)
	specs := []*units.Spec{next.Spec}
	if prev != nil && prev.Spec != nil {
		pchecks, err := e.checks(app, *prev)
		if err != nil {
			p.RevertCheck = CannotCheck(fmt.Errorf("health checks of the previous release %s: %w", prev.short(), err))
		} else {
			p.RevertCheck = e.checker(pchecks, prev.short(), log)
		}
		specs = append(specs, prev.Spec)
	}
	if ha != nil {
		r, err := newRotation(*ha, app, specs, log)
		if err != nil {
			return nil, err
		}
		p.Rotation = r
	}
	return p, nil
}

// CannotCheck is the CheckFunc of a release whose checks could not be built: every batch
// fails with err, so a revert onto it is reported unverified, never counted healthy.
func CannotCheck(err error) CheckFunc {
	return func(context.Context, []string) error { return err }
}
