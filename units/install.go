package units

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
)

// DefaultSettle is how long an instance must stay active after its start job when
// Installer.Settle is zero. A start job reports "done" as soon as the program is executed,
// so a program that exits at once (a bad flag, a port in use) is only caught by watching
// the unit a moment longer.
const DefaultSettle = time.Second

// journalLines is how many of a failed instance's last journal lines an error carries.
const journalLines = 10

// Installer installs an app's units into a unit directory and drives them through a systemd
// manager. It keeps no state between calls: what an app has installed is the Installed value
// the caller stores and passes back, so one Installer can serve every app.
type Installer struct {
	// Dir is the unit directory the manager loads units from (/etc/systemd/system, or
	// $XDG_CONFIG_HOME/systemd/user for a user manager).
	Dir string
	// Conn is a go-systemd connection to the manager that loads Dir.
	Conn *sddbus.Conn
	// Journal returns the last n output lines of a unit, for error messages; nil leaves
	// them out.
	Journal func(ctx context.Context, unit string, n int) []string
	// Settle is how long an instance must stay active after its start job to count as
	// started; zero means DefaultSettle.
	Settle time.Duration
	// Log, when set, is told about each step, with data as key-value pairs.
	Log func(msg string, kv ...any)

	// Batches splits a Deploy's instances into the batches that restart together, in order:
	// the next batch starts only once the current one has started and is healthy, so no
	// more instances are out of rotation at once than the largest batch holds. Every
	// instance must be in exactly one batch (Deploy refuses anything else before it writes
	// a file). Nil restarts one instance at a time. See Batches (the function) for the
	// batches of a service.json's rollout.
	Batches func(instances []string) [][]string
	// Healthy decides whether a batch of instances that have (re)started and settled on the
	// new units is healthy; an error fails the rollout at that batch exactly as a failed
	// start does. Nil counts every settled instance as healthy.
	Healthy func(ctx context.Context, batch []string) error
	// RevertHealthy health-checks a batch of instances put back on the previous units after
	// a failure, the same way; its error is reported with the deploy's. Nil counts every
	// settled instance as healthy.
	RevertHealthy func(ctx context.Context, batch []string) error
	// AutoRevert says whether a failure of batch puts the previous units back (service.json
	// rollout.auto_revert); nil always does. When it says no, Deploy halts the rollout and
	// leaves the failed batch, and the earlier ones, on the new units.
	AutoRevert func(batch []string) bool
	// BeforeBatch, when set, is called with a batch just before its instances (re)start, in
	// a rollout and when a batch is put back after a failure (e.g. to take them out of a
	// load balancer's rotation). Its error fails the batch before anything restarts; while
	// putting previous units back it is logged and the batch restarts anyway, since the
	// host must not stay on the failed units.
	BeforeBatch func(ctx context.Context, batch []string) error
	// BeforeRevert, when set, is called once when a failed Deploy starts putting prev back,
	// before any instance restarts on the old units: whatever else the old units read (an
	// environment file) must be back first. Its error is reported with the revert's, and the
	// revert goes on.
	BeforeRevert func(ctx context.Context) error
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

// Deploy installs files (from Generate) for app, replacing prev (nil on the first deploy),
// and starts or restarts every instance, batch after batch (Installer.Batches; one at a time
// by default). The instances of a batch restart together; each counts as started when its
// start job is done and it then stays active, without being restarted by systemd, for
// Settle. Once all of a batch have started, Healthy decides on the batch, and only then does
// the next batch start.
//
// Outcomes:
//   - Success: every instance runs the new units; units of services and instances that
//     prev had and files do not are stopped and removed; the target is enabled and
//     started. It returns what is now installed.
//   - A batch fails, an instance does not start (the error wraps an *InstanceError naming
//     it, its state and its last journal lines) or Healthy returns an error (wrapped): the
//     error names the batch. Deploy has put prev's files back byte for byte (and removed
//     files prev did not have), reloaded, restarted with the old units every instance it
//     had touched that prev had, the failed batch first and then the earlier batches in
//     reverse order, each batch health-checked by RevertHealthy before the next, stopped
//     those prev did not have, and returns prev. On a first deploy it stops what it
//     started, removes the files and returns nil.
//   - A batch fails and AutoRevert says not to revert it: the rollout halts; the files stay
//     the new ones, the touched instances keep running the new units, the others keep
//     their running processes, and it returns the new files with the instances of both,
//     so the next Deploy replaces or stops every one. The error says so.
//   - Putting prev back fails too: the error says both, and the returned Installed lists
//     every file and instance that may still be present, so a later Deploy or Remove
//     cleans them up. A reverted batch that RevertHealthy finds unhealthy is reported in
//     the error too; it runs prev's units, so prev is returned.
//   - The instances run but removing dropped units or enabling the target fails: the new
//     Installed and an error.
//
// Cancelling ctx abandons the rollout at the next job or check, and prev is put back as on
// a failure. Putting prev back, and the steps after the last instance has started, run
// without ctx's cancellation, bounded by systemd's own start and stop timeouts and the
// health checks' deadlines, so a deploy interrupted by a shutdown never leaves the host
// half-way.
func (in *Installer) Deploy(ctx context.Context, app string, files []File, instances []string, target string, prev *Installed) (*Installed, error) {
	next := &Installed{Files: slices.Clone(files), Instances: slices.Clone(instances), Target: target}
	if err := check(next); err != nil {
		return prev, fmt.Errorf("deploy units of %s: %w", app, err)
	}
	batches, err := in.batches(next.Instances)
	if err != nil {
		return prev, fmt.Errorf("deploy units of %s: %w", app, err)
	}
	if prev == nil {
		prev = &Installed{}
	} else if err := check(prev); err != nil {
		return prev, fmt.Errorf("deploy units of %s: previous units: %w", app, err)
	}
	first := len(prev.Files) == 0

	if err := in.install(ctx, next.Files, prev.Files); err != nil {
		return in.revert(ctx, app, prev, next, nil, err)
	}
	var done [][]string // the batches (re)started so far, the current one last
	for i, batch := range batches {
		if err := context.Cause(ctx); err != nil {
			return in.revert(ctx, app, prev, next, done, fmt.Errorf("stopped before batch %d of %d: %w", i+1, len(batches), err))
		}
		done = append(done, batch)
		in.log("batch started", "app", app, "batch", i+1, "of", len(batches), "instances", batch)
		if err := in.before(ctx, batch); err != nil {
			return in.revert(ctx, app, prev, next, done[:len(done)-1], fmt.Errorf("batch %d of %d: %w", i+1, len(batches), err))
		}
		if err := in.rollBatch(ctx, batch, in.Healthy); err != nil {
			err = fmt.Errorf("batch %d of %d: %w", i+1, len(batches), err)
			if in.AutoRevert != nil && !in.AutoRevert(batch) && ctx.Err() == nil {
				return in.halt(app, prev, next, done, err)
			}
			return in.revert(ctx, app, prev, next, done, err)
		}
		in.log("batch healthy", "app", app, "batch", i+1, "of", len(batches), "instances", batch)
	}

	// Every instance runs the new release: there is no going back, so the rest runs to its
	// end even if ctx is cancelled now. Retire what the release dropped, enable the target.
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, unit := range prev.Instances {
		if !slices.Contains(next.Instances, unit) {
			errs = append(errs, in.stop(ctx, unit))
		}
	}
	if prev.Target != "" && prev.Target != next.Target {
		errs = append(errs, in.stop(ctx, prev.Target), in.disable(ctx, prev.Target))
	}
	errs = append(errs, in.remove(dropped(prev.Files, next.Files)))
	if _, _, err := in.Conn.EnableUnitFilesContext(ctx, []string{filepath.Join(in.Dir, next.Target)}, false, true); err != nil {
		errs = append(errs, fmt.Errorf("enable %s: %w", next.Target, err))
	}
	if err := in.Conn.ReloadContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("reload systemd: %w", err))
	}
	errs = append(errs, in.job(ctx, "start", in.Conn.StartUnitContext, next.Target))
	if err := errors.Join(errs...); err != nil {
		return next, fmt.Errorf("deploy units of %s: %w", app, err)
	}
	in.log("units deployed", "app", app, "instances", len(next.Instances), "first", first)
	return next, nil
}

// Remove stops everything prev installed, disables its target and removes its files, for
// an app removed from the configuration. It carries on past errors, so as much as possible
// is gone, and returns them all. A nil prev has nothing to remove.
func (in *Installer) Remove(ctx context.Context, prev *Installed) error {
	if prev == nil {
		return nil
	}
	if err := check(prev); err != nil {
		return fmt.Errorf("remove units: %w", err)
	}
	var errs []error
	if prev.Target != "" {
		errs = append(errs, in.stop(ctx, prev.Target))
	}
	for _, unit := range slices.Backward(prev.Instances) {
		errs = append(errs, in.stop(ctx, unit))
	}
	if prev.Target != "" {
		errs = append(errs, in.disable(ctx, prev.Target))
	}
	errs = append(errs, in.remove(names(prev.Files)))
	if err := in.Conn.ReloadContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("reload systemd: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove units of %s: %w", prev.Target, err)
	}
	in.log("units removed", "target", prev.Target)
	return nil
}

// revert handles a failed deploy: it puts prev back and returns what is installed then,
// with cause (and whatever failed while putting prev back). done are the batches the deploy
// started or restarted, the failed one last; they are put back in reverse order.
func (in *Installer) revert(ctx context.Context, app string, prev, next *Installed, done [][]string, cause error) (*Installed, error) {
	ctx = context.WithoutCancel(ctx)
	in.log("deploy failed, putting previous units back", "app", app, "error", cause.Error())
	var errs, sick []error
	if in.BeforeRevert != nil {
		if err := in.BeforeRevert(ctx); err != nil {
			errs = append(errs, fmt.Errorf("before revert: %w", err))
		}
	}
	for _, batch := range done {
		for _, unit := range batch {
			if !slices.Contains(prev.Instances, unit) {
				errs = append(errs, in.stop(ctx, unit))
			}
		}
	}
	if len(prev.Files) == 0 {
		errs = append(errs, in.remove(names(next.Files)))
		if err := in.Conn.ReloadContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("reload systemd: %w", err))
		}
	} else {
		errs = append(errs, in.install(ctx, prev.Files, next.Files))
	}
	for _, batch := range slices.Backward(done) {
		var back []string
		for _, unit := range batch {
			if slices.Contains(prev.Instances, unit) {
				back = append(back, unit)
			}
		}
		if len(back) == 0 {
			continue
		}
		in.log("batch reverting", "app", app, "instances", back)
		if err := in.before(ctx, back); err != nil {
			in.log("before batch failed, reverting anyway", "app", app, "instances", back, "error", err.Error())
		}
		err := in.rollBatch(ctx, back, in.RevertHealthy)
		var he *healthError
		switch {
		case errors.As(err, &he):
			sick = append(sick, err)
		case err != nil:
			errs = append(errs, err)
		default:
			in.log("batch reverted", "app", app, "instances", back)
		}
	}
	cause = fmt.Errorf("deploy units of %s: %w", app, cause)
	if err := errors.Join(errs...); err != nil {
		return union(prev, next), errors.Join(cause, fmt.Errorf("put previous units of %s back: %w", app, err), unhealthy(app, sick))
	}
	if err := unhealthy(app, sick); err != nil {
		cause = errors.Join(cause, err)
	} else if len(done) > 0 && len(prev.Files) > 0 {
		cause = fmt.Errorf("%w; previous units put back and healthy", cause)
	}
	if len(prev.Files) == 0 {
		return nil, cause
	}
	return prev, cause
}

// install writes files into Dir, removes the files of old that files does not have, and
// reloads the manager.
func (in *Installer) install(ctx context.Context, files, old []File) error {
	if err := os.MkdirAll(in.Dir, 0o755); err != nil {
		return fmt.Errorf("create unit directory: %w", err)
	}
	for _, f := range files {
		path := filepath.Join(in.Dir, f.Name)
		if dir := filepath.Dir(path); dir != in.Dir {
			if err := os.Mkdir(dir, 0o755); err == nil {
				if err := atomicfile.SyncDir(in.Dir); err != nil {
					return err
				}
			} else if !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("create drop-in directory: %w", err)
			}
		}
		if err := atomicfile.Write(path, []byte(f.Content), 0o644); err != nil {
			return err
		}
	}
	if err := in.remove(dropped(old, files)); err != nil {
		return err
	}
	if err := in.Conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("reload systemd: %w", err)
	}
	return nil
}

// remove deletes the named files from Dir, then their drop-in directories when nothing else
// is left in them (an administrator's own override stays, and keeps its directory).
func (in *Installer) remove(names []string) error {
	var errs []error
	dirs := map[string]bool{}
	for _, name := range names {
		if err := os.Remove(filepath.Join(in.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if d := filepath.Dir(name); d != "." {
			dirs[d] = true
		}
	}
	for d := range dirs {
		if ents, err := os.ReadDir(filepath.Join(in.Dir, d)); err == nil && len(ents) == 0 {
			if err := os.Remove(filepath.Join(in.Dir, d)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(names) > 0 {
		errs = append(errs, atomicfile.SyncDir(in.Dir))
	}
	return errors.Join(errs...)
}

// check refuses an Installed whose names could reach outside the unit directory or are not
// pushdeploy's, so a corrupt record never makes Deploy or Remove touch other files.
func check(i *Installed) error {
	var errs []error
	unitName := func(what, name string) {
		if !strings.HasPrefix(name, "pushdeploy-") || strings.ContainsAny(name, "/\\") || !filepath.IsLocal(name) {
			errs = append(errs, fmt.Errorf("%s %q is not a pushdeploy unit name", what, name))
		}
	}
	for _, f := range i.Files {
		unit, rest, dropIn := strings.Cut(f.Name, "/")
		switch {
		case !filepath.IsLocal(f.Name) || filepath.Clean(f.Name) != f.Name:
			errs = append(errs, fmt.Errorf("file %q is not a clean name inside the unit directory", f.Name))
		case dropIn && (!strings.HasSuffix(unit, ".d") || !strings.HasSuffix(rest, ".conf") || strings.Contains(rest, "/")):
			errs = append(errs, fmt.Errorf("file %q is neither a unit nor a drop-in", f.Name))
		default:
			unitName("file", unit)
		}
	}
	for _, u := range i.Instances {
		unitName("instance", u)
	}
	if i.Target != "" || len(i.Files) > 0 {
		unitName("target", i.Target)
		if !slices.Contains(names(i.Files), i.Target) {
			errs = append(errs, fmt.Errorf("target %s has no file", i.Target))
		}
	}
	return errors.Join(errs...)
}

// names lists the files' names.
func names(files []File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Name
	}
	return out
}

// dropped lists the names in old that files does not have.
func dropped(old, files []File) []string {
	keep := names(files)
	var out []string
	for _, f := range old {
		if !slices.Contains(keep, f.Name) {
			out = append(out, f.Name)
		}
	}
	return out
}

// union is everything that may be installed after a failed attempt to put prev back:
// prev's files and instances, then next's that prev did not have.
func union(prev, next *Installed) *Installed {
	u := &Installed{Files: slices.Clone(prev.Files), Instances: slices.Clone(prev.Instances), Target: prev.Target}
	for _, f := range next.Files {
		if !slices.Contains(names(u.Files), f.Name) {
			u.Files = append(u.Files, f)
		}
	}
	for _, unit := range next.Instances {
		if !slices.Contains(u.Instances, unit) {
			u.Instances = append(u.Instances, unit)
		}
	}
	if u.Target == "" {
		u.Target = next.Target
	}
	return u
}

func (in *Installer) log(msg string, kv ...any) {
	if in.Log != nil {
		in.Log(msg, kv...)
	}
}
