package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
	"github.com/pushdeploy/pushdeploy/units"
)

// systemd returns the connection to the configured manager, opened at the first deploy that
// needs it: an agent whose apps ship no service.json never needs a manager.
func (a *Agent) systemd(ctx context.Context) (*sddbus.Conn, error) {
	a.sdMu.Lock()
	defer a.sdMu.Unlock()
	if a.sd != nil {
		return a.sd, nil
	}
	cfg := a.cfg.Systemd
	var conn *sddbus.Conn
	var err error
	switch {
	case cfg.Bus != "":
		conn, err = sddbus.NewConnection(func() (*dbus.Conn, error) { return dialBus(cfg.Bus) })
	default:
		conn, err = sddbus.NewSystemConnectionContext(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the systemd %s manager: %w", cfg.Scope, err)
	}
	a.sd = conn
	return conn, nil
}

// dialBus connects to a D-Bus address as the agent's own user.
func dialBus(addr string) (*dbus.Conn, error) {
	c, err := dbus.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		c.Close()
		return nil, fmt.Errorf("authenticate to %s: %w", addr, err)
	}
	if err := c.Hello(); err != nil {
		c.Close()
		return nil, fmt.Errorf("hello to %s: %w", addr, err)
	}
	return c, nil
}

// journal reads a unit's last output lines with journalctl, for error messages.
func (a *Agent) journal(ctx context.Context, unit string, n int) []string {
	args := []string{"--no-pager", "-q", "-o", "cat", "-n", strconv.Itoa(n)}
	if a.cfg.Systemd.JournalDir != "" {
		args = append(args, "-D", a.cfg.Systemd.JournalDir)
	}
	if a.cfg.Systemd.Scope == "user" {
		args = append(args, "--user-unit", unit)
		if a.cfg.Systemd.JournalDir == "" {
			args = append(args, "--user")
		}
	} else {
		args = append(args, "-u", unit)
	}
	out, err := exec.CommandContext(ctx, "journalctl", args...).Output()
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

func (a *Agent) loadInstalled(app string) (*units.Installed, error) {
	data, err := os.ReadFile(a.dirs.Units(app))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read installed units of %s: %w", app, err)
	}
	var in units.Installed
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("read installed units of %s: %w", app, err)
	}
	return &in, nil
}

func (a *Agent) saveInstalled(app string, in *units.Installed) error {
	data, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return fmt.Errorf("record installed units of %s: %w", app, err)
	}
	return atomicfile.Write(a.dirs.Units(app), data, 0o644)
}

// startServices installs the release's units and rolls its instances over in health-checked
// batches (service.json's rollout and health). A release without service.json runs nothing:
// its files are the deploy. On failure the installer has already put the previous release's
// units back, restarted and health-checked them (unless a service's auto_revert is off), and
// the release is marked bad with the reason, unless the agent is stopping.
//
// beforeRevert (may be nil) runs when a failed rollout starts putting the previous release
// back, before any instance restarts on it: it restores the previous environment file.
func (a *Agent) startServices(ctx context.Context, d *state.Deploy, rel release.Release, beforeRevert func() error, log zerolog.Logger) (err error) {
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
		// The release no longer runs services: the previous release's must not go on.
		in, err := a.installer(ctx, log)
		if err != nil {
			return err
		}
		if err := in.Remove(ctx, prev); err != nil {
			return err
		}
		log.Info().Strs("instances", prev.Instances).Msg("services of the previous release removed: no service.json")
		return os.Remove(a.dirs.Units(d.App))
	}
	// From here on a failure is the release's, and it is marked bad, except when the agent
	// is stopping or cannot reach the manager.
	noManager := false
	defer func() {
		if err == nil || ctx.Err() != nil || noManager {
			return
		}
		if merr := a.store.SetMark(d.App, d.SHA, release.Bad, err.Error()); merr != nil {
			log.Error().Err(merr).Msg("mark release bad")
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
	in, err := a.installer(ctx, log)
	if err != nil {
		noManager = true
		return err
	}
	config := a.configEnv(d.App)
	checks, err := healthChecks(in.Conn, d.App, d.SHA, rel.Dir, spec, config)
	if err != nil {
		return err
	}
	batches := units.Batches(spec, d.App)
	in.Batches = func([]string) [][]string { return batches }
	in.Healthy = a.healthy(checks, abbrev.SHA(d.SHA), log)
	in.AutoRevert = autoRevert(spec, d.App)
	if beforeRevert != nil {
		in.BeforeRevert = func(context.Context) error { return beforeRevert() }
	}
	specs := []*units.Spec{spec}
	if d.Previous != "" {
		// The previous release's instances are checked the same way after a revert.
		dir := a.store.ReleaseDir(d.App, d.Previous)
		if pspec, err := units.Load(dir); err == nil {
			specs = append(specs, pspec)
			if pchecks, err := healthChecks(in.Conn, d.App, d.Previous, dir, pspec, config); err == nil {
				in.RevertHealthy = a.healthy(pchecks, abbrev.SHA(d.Previous), log)
			}
		}
	}
	restore, err := a.inRotation(in, d.App, specs, log)
	if err != nil {
		return err
	}
	defer restore(ctx)
	log.Info().Int("batches", len(batches)).Msg("rollout planned")
	installed, err := in.Deploy(ctx, d.App, files, units.Instances(spec, d.App), units.TargetName(d.App), prev)
	if installed != nil {
		if serr := a.saveInstalled(d.App, installed); serr != nil && err == nil {
			err = serr
		}
	}
	if err != nil {
		return err
	}
	log.Info().Strs("instances", installed.Instances).Msg("services running")
	return nil
}

// restartServices restarts the installed instances of d's release (of d.Service only, when
// set) batch after batch as its service.json's rollout says, each batch health-checked and
// taken out of haproxy's rotation meanwhile.
func (a *Agent) restartServices(ctx context.Context, d *state.Deploy, log zerolog.Logger) error {
	in, batches, restore, err := a.restartPlan(ctx, d, log)
	if err != nil {
		return err
	}
	defer restore(ctx)
	log.Info().Int("batches", len(batches)).Str("service", d.Service).Msg("restart planned")
	_, err = in.Restart(ctx, d.App, batches)
	return err
}

// restartPlan prepares a rolling restart of the installed instances of d's release (of
// d.Service only, when set): the installer with its health and rotation hooks, the batches
// as service.json's rollout says, and what puts haproxy's servers back in rotation at the
// end, whatever the outcome.
func (a *Agent) restartPlan(ctx context.Context, d *state.Deploy, log zerolog.Logger) (*units.Installer, [][]string, func(context.Context), error) {
	dir := a.store.ReleaseDir(d.App, d.SHA)
	spec, err := units.Load(dir)
	if errors.Is(err, units.ErrNoServiceFile) {
		return nil, nil, nil, fmt.Errorf("restart %s: release %.12s runs no services (no service.json): %w", d.App, d.SHA, admin.ErrNothingToDo)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	installed, err := a.loadInstalled(d.App)
	if err != nil {
		return nil, nil, nil, err
	}
	if installed == nil {
		return nil, nil, nil, fmt.Errorf("restart %s: no services installed: %w", d.App, admin.ErrNothingToDo)
	}
	var only []string
	if d.Service != "" {
		s, ok := spec.Services[d.Service]
		if !ok {
			return nil, nil, nil, fmt.Errorf("restart %s: service %q: %w", d.App, d.Service, state.ErrNotFound)
		}
		for n := 1; n <= s.Instances; n++ {
			only = append(only, units.UnitName(d.App, d.Service, n))
		}
	}
	var batches [][]string
	for _, b := range units.Batches(spec, d.App) {
		b = slices.DeleteFunc(b, func(u string) bool {
			return !slices.Contains(installed.Instances, u) || (only != nil && !slices.Contains(only, u))
		})
		if len(b) > 0 {
			batches = append(batches, b)
		}
	}
	in, err := a.installer(ctx, log)
	if err != nil {
		return nil, nil, nil, err
	}
	checks, err := healthChecks(in.Conn, d.App, d.SHA, dir, spec, a.configEnv(d.App))
	if err != nil {
		return nil, nil, nil, err
	}
	in.Healthy = a.healthy(checks, abbrev.SHA(d.SHA), log)
	restore, err := a.inRotation(in, d.App, []*units.Spec{spec}, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return in, batches, restore, nil
}

// inRotation adds the app's haproxy drain and ready steps (apps.<app>.haproxy) to in's
// hooks, when configured, and returns what puts every server it drained back in rotation
// at the end, whatever the outcome.
func (a *Agent) inRotation(in *units.Installer, app string, specs []*units.Spec, log zerolog.Logger) (func(context.Context), error) {
	ap, ok := a.apps[app]
	if !ok || ap.cfg.HAProxy == nil {
		return func(context.Context) {}, nil
	}
	r, err := newRotation(ap.cfg.HAProxy, app, specs, log)
	if err != nil {
		return nil, err
	}
	in.BeforeBatch = r.drain
	in.Healthy = r.healthy(in.Healthy)
	in.RevertHealthy = r.healthy(in.RevertHealthy)
	return r.restore, nil
}

// installer drives the configured systemd manager for one deploy.
func (a *Agent) installer(ctx context.Context, log zerolog.Logger) (*units.Installer, error) {
	conn, err := a.systemd(ctx)
	if err != nil {
		return nil, err
	}
	return &units.Installer{
		Dir:     a.cfg.Systemd.UnitDir,
		Conn:    conn,
		Journal: a.journal,
		Settle:  a.cfg.Systemd.Settle,
		Log: func(msg string, kv ...any) {
			log.Info().Fields(kv).Msg(msg)
		},
	}, nil
}
