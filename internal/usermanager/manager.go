package usermanager

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Where the systemd pieces live on Debian (REFERENCE.md §4).
const (
	systemdBinary  = "/lib/systemd/systemd"
	journaldBinary = "/lib/systemd/systemd-journald"
)

// DefaultName prefixes the cgroup subtree of a manager whose Options.Name is empty.
const DefaultName = "pushdeploy-usermanager"

// startTimeout bounds how long Start waits for the manager to run.
const startTimeout = 10 * time.Second

// ErrUnavailable is what every error Start returns because this machine cannot run a
// private user manager matches (errors.Is), as opposed to a manager that failed to start:
// a test skips on it, a demo falls back or explains. The error is an *UnavailableError.
var ErrUnavailable = errors.New("systemd user manager unavailable")

// UnavailableError says why this machine cannot run a private user manager: not root, no
// CAP_SYS_ADMIN (unshare -m and mount need it), no writable cgroup hierarchy for systemd,
// or a program missing (unshare, mount, dbus-daemon, systemctl, journalctl,
// /lib/systemd/systemd, /lib/systemd/systemd-journald).
type UnavailableError struct {
	Reason error
}

func (e *UnavailableError) Error() string { return ErrUnavailable.Error() + ": " + e.Reason.Error() }

// Unwrap returns the reason.
func (e *UnavailableError) Unwrap() error { return e.Reason }

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

func unavailable(format string, args ...any) error {
	return &UnavailableError{Reason: fmt.Errorf(format, args...)}
}

// Options configure Start. The zero value is ready to use.
type Options struct {
	// Dir holds the manager's home, configuration (and so its unit directory) and log
	// directories. Empty means a new directory under os.TempDir(), which Stop removes; a
	// Dir given here is left in place, with what the manager wrote into it.
	Dir string
	// Name prefixes the manager's cgroup subtree, <Name>-<N>.slice; empty means
	// DefaultName.
	Name string
	// Logf, when set, is told what Stop works around without failing: units that did not
	// stop cleanly before the manager, a cleanup thread still running.
	Logf func(format string, args ...any)
}

// Manager is a running systemd user manager started by Start. Its exported fields are set
// by Start and must not be changed.
type Manager struct {
	// RuntimeDir is XDG_RUNTIME_DIR (mode 0700): the bus socket, the manager's private
	// socket and every unit's runtime directory. It is short (under os.TempDir) because
	// unix socket paths are limited to 107 bytes. Stop removes it.
	RuntimeDir string
	// Home is HOME.
	Home string
	// ConfigHome is XDG_CONFIG_HOME. StateDirectory= of a unit lands here.
	ConfigHome string
	// UnitDir is ConfigHome/systemd/user, where a user manager loads units from: write
	// units here, then reload.
	UnitDir string
	// LogDir is mounted over /run/log in the manager's namespace: journald keeps its files
	// in LogDir/journal, and the launcher's own output is in LogDir/launcher.log.
	LogDir string
	// JournalDir is LogDir/journal, the directory to give `journalctl -D`.
	JournalDir string
	// BusAddress is the session bus address, "unix:path=RuntimeDir/bus".
	BusAddress string
	// Env is what a command needs to talk to this manager as `systemctl --user` would:
	// DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR, HOME and XDG_CONFIG_HOME. Append it to
	// os.Environ() (later entries win).
	Env []string
	// Cgroup is the name of the manager's cgroup subtree, <Name>-<N>.slice, in every
	// hierarchy systemd tracks processes in.
	Cgroup string

	dir     string // Options.Dir, or the directory Start created
	ownDir  bool   // Start created dir: Stop removes it
	logf    func(string, ...any)
	tracked []string      // the hierarchies holding our processes
	cmd     *exec.Cmd     // the launcher
	exited  chan struct{} // closed once cmd.Wait returned
	stopW   *os.File      // closing it makes the launcher stop the manager

	stopOnce sync.Once
	stopErr  error
}

// Start starts a systemd user manager with its own D-Bus session bus and journald, and
// returns once the manager runs (SystemState "running" or "degraded").
//
// Outcomes:
//   - The manager runs: stop it with Stop, which waits for every process it started.
//   - This machine cannot run one: an error matching ErrUnavailable (an
//     *UnavailableError saying why); nothing was started or created.
//   - It could not be started (a failed mount, a manager that did not come up within
//     10s): an error with what the launcher printed; whatever had started is stopped and
//     removed again.
func Start(opts Options) (*Manager, error) {
	tracked, err := available()
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	rt, err := os.MkdirTemp("", "sd")
	if err != nil {
		return nil, fmt.Errorf("create runtime dir: %w", err)
	}
	if n := len(rt + "/systemd/inaccessible/sock"); n > 107 {
		os.Remove(rt)
		return nil, fmt.Errorf("runtime dir %s: socket paths would be %d bytes, over 107: set TMPDIR to a shorter directory", rt, n)
	}
	m := &Manager{
		RuntimeDir: rt,
		BusAddress: "unix:path=" + filepath.Join(rt, "bus"),
		Cgroup:     opts.Name + "-" + strings.TrimPrefix(filepath.Base(rt), "sd") + ".slice",
		dir:        opts.Dir,
		logf:       opts.Logf,
		tracked:    tracked,
		exited:     make(chan struct{}),
	}
	if m.dir == "" {
		if m.dir, err = os.MkdirTemp("", "usermanager"); err != nil {
			os.Remove(rt)
			return nil, fmt.Errorf("create manager dir: %w", err)
		}
		m.ownDir = true
	}
	m.Home = filepath.Join(m.dir, "home")
	m.ConfigHome = filepath.Join(m.dir, "config")
	m.UnitDir = filepath.Join(m.ConfigHome, "systemd", "user")
	m.LogDir = filepath.Join(m.dir, "log")
	m.JournalDir = filepath.Join(m.LogDir, "journal")
	m.Env = []string{
		"DBUS_SESSION_BUS_ADDRESS=" + m.BusAddress,
		"XDG_RUNTIME_DIR=" + m.RuntimeDir,
		"HOME=" + m.Home,
		"XDG_CONFIG_HOME=" + m.ConfigHome,
	}

	if err := m.prepareDirs(); err != nil {
		return nil, errors.Join(err, m.Stop())
	}
	deadline := time.Now().Add(startTimeout)
	if err := m.start(); err != nil {
		return nil, errors.Join(fmt.Errorf("start systemd user manager: %w", err), m.Stop())
	}
	if err := m.waitRunning(deadline); err != nil {
		err = fmt.Errorf("start systemd user manager: %w\n%s", err, m.launcherLog())
		return nil, errors.Join(err, m.Stop())
	}
	return m, nil
}

// available returns the cgroup hierarchies systemd tracks processes in, or an
// *UnavailableError when the machine cannot run a private user manager.
func available() ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, unavailable("needs root (unshare -m, mount, cgroups)")
	}
	for _, bin := range []string{"unshare", "mount", "dbus-daemon", "systemctl", "journalctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, unavailable("%s not installed", bin)
		}
	}
	for _, bin := range []string{systemdBinary, journaldBinary} {
		if _, err := os.Stat(bin); err != nil {
			return nil, unavailable("%s not installed", bin)
		}
	}
	if ok, err := hasCapSysAdmin(); err != nil {
		return nil, fmt.Errorf("read capabilities: %w", err)
	} else if !ok {
		return nil, unavailable("no CAP_SYS_ADMIN (unshare -m and mount need it)")
	}
	tracked, err := trackingHierarchies()
	if err != nil {
		return nil, &UnavailableError{Reason: err}
	}
	return tracked, nil
}

// prepareDirs creates the manager's directories, the session bus units and the cgroup
// subtree the launcher moves itself into.
func (m *Manager) prepareDirs() error {
	for _, d := range []string{m.Home, m.ConfigHome, m.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create manager dir: %w", err)
		}
	}
	if err := os.MkdirAll(m.UnitDir, 0o755); err != nil {
		return fmt.Errorf("create unit dir: %w", err)
	}
	// A user manager serves D-Bus only on a bus it started itself: it connects once its
	// dbus.socket and dbus.service run, and never to a dbus-daemon started next to it.
	// Debian's dbus-user-session ships these units; ours, in the runtime unit directory
	// (which overrides /usr/lib/systemd/user and keeps UnitDir empty), need only
	// dbus-daemon.
	dbusDaemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		return err
	}
	units := map[string]string{
		"dbus.socket": "[Unit]\nDescription=D-Bus User Message Bus Socket (usermanager)\n\n" +
			"[Socket]\nListenStream=%t/bus\n",
		"dbus.service": "[Unit]\nDescription=D-Bus User Message Bus (usermanager)\nRequires=dbus.socket\n\n" +
			"[Service]\nExecStart=" + dbusDaemon + " --session --address=systemd: --nofork --nopidfile --systemd-activation --nosyslog\n",
		// Started at once rather than by the first client.
		"sockets.target.wants/dbus.socket":  "../dbus.socket",
		"default.target.wants/dbus.service": "../dbus.service",
	}
	runtimeUnits := filepath.Join(m.RuntimeDir, "systemd", "user")
	for name, text := range units {
		path := filepath.Join(runtimeUnits, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("create runtime unit dir: %w", err)
		}
		if strings.HasPrefix(text, "../") {
			err = os.Symlink(text, path)
		} else {
			err = os.WriteFile(path, []byte(text), 0o644)
		}
		if err != nil {
			return fmt.Errorf("write bus units: %w", err)
		}
	}
	for _, h := range m.tracked {
		for _, leaf := range []string{"launcher.scope", "user@0.service"} {
			if err := os.MkdirAll(filepath.Join(h, m.Cgroup, leaf), 0o755); err != nil {
				return fmt.Errorf("create cgroup: %w", err)
			}
		}
	}
	return nil
}

// PID is the launcher's process id. /proc/PID/root is the manager's view of the
// filesystem and `nsenter -t PID -m` enters its mount namespace.
func (m *Manager) PID() int { return m.cmd.Process.Pid }

// Stop stops the units, then the manager, journald and the launcher, each waited for by
// its parent; then it checks that no process of the manager is left, removes its cgroup
// subtree and RuntimeDir, and Dir when Start created it.
//
// Outcomes:
//   - nil: everything is gone.
//   - The manager still ran 10s after being told to stop, or a process was left behind:
//     every process of the manager is killed, the cleanup goes on, and the error says so.
//   - A cgroup or directory could not be removed: the error names it.
//
// Only the first call does anything; later ones return its result.
func (m *Manager) Stop() error {
	m.stopOnce.Do(func() { m.stopErr = m.stop() })
	return m.stopErr
}

func (m *Manager) stop() error {
	var errs []error
	if m.stopW != nil {
		m.stopUnits()
		m.stopW.Close() // the launcher's watcher sees EOF and stops the manager
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("still running 10s after stop; killed every process\n%s", m.launcherLog()))
			m.killAll()
			<-m.exited
		}
	}
	// Every process was waited for by its parent: the launcher for the manager and
	// journald, the manager for the bus and the units.
	deadline := time.Now().Add(2 * time.Second)
	for left := m.Processes(); len(left) > 0; left = m.Processes() {
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("processes left after stop: %v", left))
			m.killAll()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	errs = append(errs, m.removeCgroups())
	if err := os.RemoveAll(m.RuntimeDir); err != nil {
		errs = append(errs, fmt.Errorf("remove runtime dir: %w", err))
	}
	if m.ownDir {
		if err := os.RemoveAll(m.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove manager dir: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop systemd user manager: %w", err)
	}
	return nil
}

func (m *Manager) log(format string, args ...any) {
	if m.logf != nil {
		m.logf(format, args...)
	}
}

// launcherLog returns what the launcher, journald and the manager wrote outside the
// journal (a failed mount, a manager that could not start), for errors.
func (m *Manager) launcherLog() string {
	b, err := os.ReadFile(m.launcherLogPath())
	if err != nil {
		return fmt.Sprintf("(launcher log: %v)", err)
	}
	return "launcher log:\n" + string(b)
}

func (m *Manager) launcherLogPath() string { return filepath.Join(m.LogDir, "launcher.log") }

// hasCapSysAdmin reports whether this process holds CAP_SYS_ADMIN.
func hasCapSysAdmin() (bool, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("CapEff %q: %w", v, err)
			}
			return caps&(1<<21) != 0, nil // CAP_SYS_ADMIN is 21
		}
	}
	return false, fmt.Errorf("no CapEff in /proc/self/status")
}
