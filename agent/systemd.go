package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/rollout"
	"github.com/pushdeploy/pushdeploy/rollout/systemd"
	"github.com/pushdeploy/pushdeploy/state"
	"github.com/pushdeploy/pushdeploy/units"
)

// engine returns the rollout engine for app on the configured manager, connected at the
// first operation that needs it: an agent whose apps ship no service.json never needs a
// manager. It masks the app's configuration secrets in what it quotes of the app's output.
func (a *Agent) engine(ctx context.Context, app string) (*rollout.Engine, error) {
	a.sdMu.Lock()
	defer a.sdMu.Unlock()
	if a.sd == nil {
		cfg := a.cfg.Systemd
		m, err := systemd.Open(ctx, systemd.Config{Bus: cfg.Bus, User: cfg.Scope == "user",
			UnitDir: cfg.UnitDir, JournalDir: cfg.JournalDir})
		if err != nil {
			return nil, err
		}
		a.sd = m
	}
	return &rollout.Engine{Manager: a.sd, Settle: a.cfg.Systemd.Settle, Progress: a.batchStarted, Redact: a.redactor(app)}, nil
}

func (a *Agent) loadInstalled(app string) (*rollout.Installed, error) {
	data, err := os.ReadFile(a.dirs.Units(app))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read installed units of %s: %w", app, err)
	}
	var in rollout.Installed
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("read installed units of %s: %w", app, err)
	}
	return &in, nil
}

func (a *Agent) saveInstalled(app string, in *rollout.Installed) error {
	data, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return fmt.Errorf("record installed units of %s: %w", app, err)
	}
	return atomicfile.Write(a.dirs.Units(app), data, datadir.ModePrivateFile)
}

// haproxy is the app's place in haproxy for the rollout engine; nil when not configured.
func (a *Agent) haproxy(app string) *rollout.HAProxy {
	ap, ok := a.apps[app]
	if !ok || ap.cfg.HAProxy == nil {
		return nil
	}
	h := ap.cfg.HAProxy
	return &rollout.HAProxy{Socket: h.Socket, Backend: h.Backend, Server: h.Server, DrainTimeout: h.DrainTimeout}
}

// previousRelease is the release d replaces, for the plan's revert checks and rotation: nil
// when there is none or it runs no services. A previous release whose service.json no longer
// loads is returned with its error, so a revert onto it is reported unverified instead of
// counted healthy.
func (a *Agent) previousRelease(d *state.Deploy) (*rollout.Release, error) {
	if d.Previous == "" {
		return nil, nil
	}
	dir := a.store.ReleaseDir(d.App, d.Previous)
	spec, err := units.Load(dir)
	if errors.Is(err, units.ErrNoServiceFile) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("previous release %.12s: %w", d.Previous, err)
	}
	return &rollout.Release{SHA: d.Previous, Dir: dir, Spec: spec}, nil
}

// startServices installs the release's units and rolls its instances over in health-checked
// batches (service.json's rollout and health). A release without service.json runs nothing:
// its files are the deploy, and the previous release's services are drained and removed. On
// failure the engine has already put the previous release's units back, restarted and
// health-checked them (unless a service's auto_revert is off), and the release is marked
// bad with the reason, unless the agent is stopping.
//
// Under a system manager, a release its services could not enter (data_dir below a
// directory other users cannot pass) fails before anything restarts, and is not marked bad:
// the host is at fault, not the release.
//
// putBack (may be nil) runs when a failed rollout starts putting the previous release
// back, before any instance restarts on it: it restores the previous environment file.
func (a *Agent) startServices(ctx context.Context, d *state.Deploy, rel release.Release, putBack func(context.Context) error, log zerolog.Logger) (err error) {
	prev, err := a.loadInstalled(d.App)
	if err != nil {
		return err
	}
	spec, err := units.Load(rel.Dir)
	if errors.Is(err, units.ErrNoServiceFile) {
		if prev == nil {
			log.Info().Msg("no service.json: nothing to start")
			return nil
		}
		return a.removeServices(ctx, d, prev, log)
	}
	if err == nil && a.cfg.Systemd.Scope != "user" {
		// The host's problem, not the release's: it is not marked bad.
		if err := reachable(rel.Dir); err != nil {
			return err
		}
	}
	// From here on a failure is the release's, and it is marked bad, except when the agent
	// is stopping or cannot reach the manager.
	noManager := false
	defer func() {
		if err == nil || ctx.Err() != nil || noManager {
			return
		}
		if merr := a.store.SetMark(d.App, d.SHA, release.Bad, err.Error()); merr != nil {
			err = errors.Join(err, fmt.Errorf("mark release bad: %w", merr))
			return
		}
		log.Warn().Str("sha", d.SHA).Msg("release marked bad")
	}()
	if err != nil {
		return err
	}
	files, err := units.Generate(spec, units.Options{App: d.App, SHA: d.SHA, ReleaseDir: rel.Dir,
		User: a.cfg.Systemd.Scope == "user", EnvFiles: a.envFiles(d.App)})
	if err != nil {
		return err
	}
	eng, err := a.engine(ctx, d.App)
	if err != nil {
		noManager = true
		return err
	}
	prevRel, perr := a.previousRelease(d)
	plan, err := eng.Plan(d.App, rollout.Release{SHA: d.SHA, Dir: rel.Dir, Spec: spec}, prevRel, a.haproxy(d.App), log)
	if err != nil {
		return err
	}
	if perr != nil {
		plan.RevertCheck = rollout.CannotCheck(perr)
	}
	plan.PutBack = putBack
	log.Info().Int("batches", len(plan.Batches)).Msg("rollout planned")
	next := &rollout.Installed{Files: files, Instances: units.Instances(spec, d.App), Target: units.TargetName(d.App)}
	installed, err := eng.Deploy(ctx, plan, next, prev)
	if installed != nil {
		if serr := a.saveInstalled(d.App, installed); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	if err != nil {
		return err
	}
	log.Info().Strs("instances", installed.Instances).Msg("services running")
	return nil
}

// removeServices drains and removes the services of the previous release, for a release
// that no longer has a service.json: the previous release's must not go on.
func (a *Agent) removeServices(ctx context.Context, d *state.Deploy, prev *rollout.Installed, log zerolog.Logger) error {
	eng, err := a.engine(ctx, d.App)
	if err != nil {
		return err
	}
	plan := &rollout.Plan{App: d.App, Log: log}
	if prevRel, err := a.previousRelease(d); err == nil && prevRel != nil {
		if plan, err = eng.Plan(d.App, *prevRel, nil, a.haproxy(d.App), log); err != nil {
			return err
		}
	}
	if err := eng.Remove(ctx, plan, prev); err != nil {
		return err
	}
	log.Info().Strs("instances", prev.Instances).Msg("services of the previous release removed: no service.json")
	return os.Remove(a.dirs.Units(d.App))
}

// restartServices restarts the installed instances of d's release (of d.Service only, when
// set) batch after batch as its service.json's rollout says, each batch health-checked and
// taken out of haproxy's rotation meanwhile.
func (a *Agent) restartServices(ctx context.Context, d *state.Deploy, log zerolog.Logger) error {
	eng, plan, err := a.restartPlan(ctx, d, false, log)
	if err != nil {
		return err
	}
	log.Info().Int("batches", len(plan.Batches)).Str("service", d.Service).Msg("restart planned")
	return eng.Restart(ctx, plan)
}

// restartPlan plans a rolling restart of the installed instances of d's release (of
// d.Service only, when set): the batches as service.json's rollout says, each checked. With
// reverting, a failed batch is put back on the same release (and checked again), after the
// plan's PutBack restored what changed: the checks run as units, so they read whatever
// environment file is in place when they run.
func (a *Agent) restartPlan(ctx context.Context, d *state.Deploy, reverting bool, log zerolog.Logger) (*rollout.Engine, *rollout.Plan, error) {
	dir := a.store.ReleaseDir(d.App, d.SHA)
	spec, err := units.Load(dir)
	if errors.Is(err, units.ErrNoServiceFile) {
		return nil, nil, fmt.Errorf("restart %s: release %.12s runs no services (no service.json): %w", d.App, d.SHA, admin.ErrNothingToDo)
	}
	if err != nil {
		return nil, nil, err
	}
	installed, err := a.loadInstalled(d.App)
	if err != nil {
		return nil, nil, err
	}
	if installed == nil {
		return nil, nil, fmt.Errorf("restart %s: no services installed: %w", d.App, admin.ErrNothingToDo)
	}
	if d.Service != "" {
		if _, ok := spec.Services[d.Service]; !ok {
			return nil, nil, fmt.Errorf("restart %s: service %q: %w", d.App, d.Service, state.ErrNotFound)
		}
	}
	eng, err := a.engine(ctx, d.App)
	if err != nil {
		return nil, nil, err
	}
	rel := rollout.Release{SHA: d.SHA, Dir: dir, Spec: spec}
	var prev *rollout.Release
	if reverting {
		prev = &rel
	}
	plan, err := eng.Plan(d.App, rel, prev, a.haproxy(d.App), log)
	if err != nil {
		return nil, nil, err
	}
	service := map[string]string{} // instance unit → its service
	for _, in := range units.InstancesOf(spec, d.App) {
		service[in.Unit] = in.Service.Name
	}
	plan.Only(func(unit string) bool {
		return slices.Contains(installed.Instances, unit) && (d.Service == "" || service[unit] == d.Service)
	})
	return eng, plan, nil
}
