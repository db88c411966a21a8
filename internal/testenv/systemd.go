package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Where the systemd pieces live on Debian (REFERENCE.md §4).
const (
	systemdBinary  = "/lib/systemd/systemd"
	journaldBinary = "/lib/systemd/systemd-journald"
)

// Systemd is a real systemd user manager private to one test, started by
// StartSystemd and stopped in t.Cleanup.
//
// It runs as root, in a private mount namespace (unshare -m --propagation
// private) where a tmpfs hides the host's /run/systemd, so the host never sees
// /run/systemd/system and nothing the manager or its units mount leaks out.
// Its process tree, in one process group and in a cgroup subtree of its own
// (so two managers never share a unit's cgroup, where stopping one's unit
// would kill the other's processes), is:
//
//	sh (launcher)              cgroup pushdeploy-test-N.slice/launcher.scope
//	├─ systemd-journald        its own journal, files in JournalDir
//	└─ systemd --user          cgroup pushdeploy-test-N.slice/user@0.service
//	   ├─ dbus-daemon          dbus.service: the session bus at RuntimeDir/bus
//	   └─ units                …/user@0.service/app.slice/<unit>
//
// The bus is the manager's own dbus.socket and dbus.service, as on a host
// with dbus-user-session, not a dbus-daemon started beside the manager as
// REFERENCE.md §4 says: a user manager connects only to a bus whose units it
// runs, and with dbus-user-session installed its dbus.socket takes over the
// socket path of a bus started beside it, which is why §4 seemed to work.
//
// Measured on Debian 12 (systemd 252, cgroup v1 hybrid, root, no systemd as
// PID 1); the facts tests can rely on:
//
//   - Start: the manager owns its bus name and SystemState is "running"
//     80–110 ms after the launcher starts (the manager logs "Startup finished
//     in 30ms"); stop, units included, takes about 30 ms.
//   - `systemctl --user is-system-running` prints "offline" and exits 1 even
//     though the manager runs: systemctl checks sd_booted() in its own mount
//     namespace, where /run/systemd/system does not exist (run through
//     nsenter into the manager's namespace it prints "running"). Read the
//     SystemState property instead (`systemctl --user show -p SystemState
//     --value`, or D-Bus). Other verbs, enable --now included, work.
//   - A unit written to UnitDir is loaded after a daemon-reload over D-Bus
//     (Conn.ReloadContext). StartUnitContext and RestartUnitContext report
//     job result "done" as soon as a Type=simple unit's process is spawned,
//     even for /bin/false: the unit turns "failed" (Result "exit-code")
//     right after, so check ActiveState yourself (REFERENCE.md §3).
//     Type=exec waits for the execve: a missing binary (203/EXEC) or a
//     sandbox the manager cannot set up (226/NAMESPACE) fails the job itself.
//   - The journal works: each unit's stdout and stderr and the manager's
//     lines about it ("Main process exited, code=exited, status=3") are in
//     JournalDir, and JournalLines reads them like `journalctl --user -u`.
//   - Sandboxing works fully, DynamicUser=yes and User= included (the manager
//     runs as root, so it can switch users; a dynamic user is known only
//     inside the namespace). ProtectHome=yes, ProtectKernelTunables=yes and
//     ProtectKernelLogs=yes fail with 226/NAMESPACE under a bare user manager
//     because they bind-mount the "inaccessible" nodes from
//     /run/systemd/inaccessible, which PID 1 creates at boot; StartSystemd
//     points that path at the nodes the user manager creates for itself, so
//     they work here as on a booted host.
//   - Resource limits (MemoryMax=, TasksMax=, CPUWeight=) are accepted but not
//     enforced: on this cgroup v1 host the user manager gets no controllers.
//   - PrivateTmp=yes creates /tmp/systemd-private-* and
//     /var/tmp/systemd-private-* on the host. The manager removes them in a
//     thread when the unit stops, and does not wait for that thread when it
//     exits, so teardown stops the units first, then the manager.
type Systemd struct {
	// RuntimeDir is XDG_RUNTIME_DIR (mode 0700): the bus socket, the
	// manager's private socket and every unit's runtime directory. It is
	// short (under os.TempDir) because unix socket paths are limited to 107
	// bytes.
	RuntimeDir string
	// ConfigHome is XDG_CONFIG_HOME. StateDirectory= of a unit lands here.
	ConfigHome string
	// UnitDir is ConfigHome/systemd/user, where a user manager loads units
	// from: write units here, then reload.
	UnitDir string
	// Home is HOME.
	Home string
	// JournalDir holds the journal files (`journalctl -D JournalDir`).
	JournalDir string
	// BusAddress is the session bus address, "unix:path=RuntimeDir/bus".
	BusAddress string
	// Env is what a command needs to talk to this manager as
	// `systemctl --user` would: DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR,
	// HOME and XDG_CONFIG_HOME. Append it to os.Environ() (later entries win).
	// The test process's own environment is never changed.
	Env []string

	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait returned
	stopW   *os.File      // closing it makes the launcher stop the manager
	logPath string        // the launcher's stdout and stderr
	cgroup  string        // pushdeploy-test-N.slice, in every hierarchy
	tracked []string      // the hierarchies holding our processes
}

// StartSystemd starts a systemd user manager with its own D-Bus session bus
// and journald for the test, waits until the manager runs, and stops
// everything in t.Cleanup: the units, then the manager, journald and the
// launcher, each waited for by its parent; then the cgroup subtree is checked
// empty and removed. A process still alive then fails the test.
//
// It skips the test, saying why, only when the machine cannot run it: not
// root, no CAP_SYS_ADMIN (unshare -m and mount need it), no writable cgroup
// hierarchy for systemd, or one of unshare, mount, dbus-daemon, systemctl,
// journalctl, /lib/systemd/systemd or /lib/systemd/systemd-journald missing.
// Everything else is a test failure.
func StartSystemd(t testing.TB) *Systemd {
	t.Helper()
	tracked := needSystemd(t)

	// The runtime directory is not a t.TempDir(): those are named after the
	// test and can be too long for the sockets inside.
	rt, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatalf("create runtime dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	if n := len(rt + "/systemd/inaccessible/sock"); n > 107 {
		t.Fatalf("runtime dir %s: socket paths would be %d bytes, over 107: set TMPDIR to a shorter directory", rt, n)
	}
	home, config, journal := t.TempDir(), t.TempDir(), t.TempDir()
	s := &Systemd{
		RuntimeDir: rt,
		ConfigHome: config,
		UnitDir:    filepath.Join(config, "systemd", "user"),
		Home:       home,
		JournalDir: journal,
		BusAddress: "unix:path=" + filepath.Join(rt, "bus"),
		logPath:    filepath.Join(journal, "launcher.log"),
		cgroup:     "pushdeploy-test-" + strings.TrimPrefix(filepath.Base(rt), "sd") + ".slice",
		tracked:    tracked,
		exited:     make(chan struct{}),
	}
	s.Env = []string{
		"DBUS_SESSION_BUS_ADDRESS=" + s.BusAddress,
		"XDG_RUNTIME_DIR=" + s.RuntimeDir,
		"HOME=" + s.Home,
		"XDG_CONFIG_HOME=" + s.ConfigHome,
	}
	t.Cleanup(func() { s.teardown(t) })
	if err := s.prepareDirs(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := s.start(); err != nil {
		t.Fatalf("start systemd user manager: %v", err)
	}
	if err := s.waitRunning(start.Add(10 * time.Second)); err != nil {
		t.Fatalf("systemd user manager: %v\n%s", err, s.launcherLog())
	}
	t.Logf("systemd user manager running after %v (runtime dir %s)", time.Since(start).Round(time.Millisecond), rt)
	return s
}

// needSystemd skips the test when the machine cannot run a private user
// manager and returns the cgroup hierarchies systemd tracks processes in.
func needSystemd(t testing.TB) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("systemd user manager: needs root (unshare -m, mount, cgroups)")
	}
	for _, bin := range []string{"unshare", "mount", "dbus-daemon", "systemctl", "journalctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("systemd user manager: %s not installed", bin)
		}
	}
	for _, bin := range []string{systemdBinary, journaldBinary} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("systemd user manager: %s not installed", bin)
		}
	}
	if ok, err := hasCapSysAdmin(); err != nil {
		t.Fatalf("read capabilities: %v", err)
	} else if !ok {
		t.Skip("systemd user manager: no CAP_SYS_ADMIN (unshare -m and mount need it)")
	}
	tracked, err := trackingHierarchies()
	if err != nil {
		t.Skipf("systemd user manager: %v", err)
	}
	return tracked
}

// prepareDirs creates the unit directory, the session bus units and the
// cgroup subtree the launcher moves itself into.
func (s *Systemd) prepareDirs() error {
	if err := os.MkdirAll(s.UnitDir, 0o755); err != nil {
		return fmt.Errorf("create unit dir: %w", err)
	}
	// A user manager serves D-Bus only on a bus it started itself: it
	// connects once its dbus.socket and dbus.service run, and never to a
	// dbus-daemon started next to it. Debian's dbus-user-session ships
	// these units; ours, in the runtime unit directory (which overrides
	// /usr/lib/systemd/user and keeps UnitDir empty), need only dbus-daemon.
	dbusDaemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		return err
	}
	units := map[string]string{
		"dbus.socket": "[Unit]\nDescription=D-Bus User Message Bus Socket (testenv)\n\n" +
			"[Socket]\nListenStream=%t/bus\n",
		"dbus.service": "[Unit]\nDescription=D-Bus User Message Bus (testenv)\nRequires=dbus.socket\n\n" +
			"[Service]\nExecStart=" + dbusDaemon + " --session --address=systemd: --nofork --nopidfile --systemd-activation --nosyslog\n",
		// Started at once rather than by the first client.
		"sockets.target.wants/dbus.socket":  "../dbus.socket",
		"default.target.wants/dbus.service": "../dbus.service",
	}
	runtimeUnits := filepath.Join(s.RuntimeDir, "systemd", "user")
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
	for _, h := range s.tracked {
		for _, leaf := range []string{"launcher.scope", "user@0.service"} {
			if err := os.MkdirAll(filepath.Join(h, s.cgroup, leaf), 0o755); err != nil {
				return fmt.Errorf("create cgroup: %w", err)
			}
		}
	}
	return nil
}

// Conn returns a go-systemd connection to this manager, closed in t.Cleanup
// (before the manager stops). It is built explicitly like go-systemd's
// NewUserConnectionContext, whose only difference is that it finds the bus
// through the process environment, which parallel tests must not change:
// dial BusAddress, authenticate with EXTERNAL as our uid (no user name
// lookup, no cookie file in HOME, as go-systemd does), then Hello.
func (s *Systemd) Conn(t testing.TB) *sddbus.Conn {
	t.Helper()
	conn, err := sddbus.NewConnection(func() (*dbus.Conn, error) { return dialBus(s.BusAddress) })
	if err != nil {
		t.Fatalf("connect to systemd user manager at %s: %v", s.BusAddress, err)
	}
	t.Cleanup(conn.Close)
	return conn
}

func dialBus(addr string) (*dbus.Conn, error) {
	c, err := dbus.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		c.Close()
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if err := c.Hello(); err != nil {
		c.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	return c, nil
}

// Command returns a command (systemctl, systemd-run, systemd-analyze, …) with
// Env added to the test's environment, for callers that want the exit status.
func (s *Systemd) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), s.Env...)
	return cmd
}

// Systemctl runs `systemctl --user ARGS…` against this manager and returns
// its combined output, trimmed. A non-zero exit fails the test; use Command
// for commands whose exit status is the answer (is-active, is-failed).
func (s *Systemd) Systemctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.Command("systemctl", append([]string{"--user", "--no-pager"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl --user %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// JournalLines returns the last n journal messages of unit, oldest first,
// as `journalctl --user -u UNIT -n N -o cat` would show them: the unit's
// stdout and stderr and the manager's lines about it, such as
// "web.service: Main process exited, code=exited, status=3/NOTIMPLEMENTED".
// It first makes journald write out everything it has received, so the lines
// of a unit that just failed are there. An error fails the test.
//
// journald tells which unit a line comes from by the sender's cgroup, read
// when it processes the line. A process that exited by then (a command that
// fails at once) leaves lines without a unit, and a user manager, unlike the
// system one, does not name the unit in the stream either: `journalctl
// --user -u` misses them (seen here in about one run in ten). JournalLines
// also takes the lines without a unit whose _PID is the unit's last main
// process (ExecMainPID), so the output of the last run is complete; lines of
// other processes of the unit that exited that early stay unattributed.
func (s *Systemd) JournalLines(t testing.TB, unit string, n int) []string {
	t.Helper()
	if err := s.syncJournal(); err != nil {
		t.Fatalf("sync journal: %v", err)
	}
	mainPID := s.Systemctl(t, "show", "--property=ExecMainPID", "--value", unit)
	var stderr bytes.Buffer
	cmd := exec.Command("journalctl", "-D", filepath.Join(s.JournalDir, "journal"),
		"-o", "json", "--output-fields=MESSAGE,_PID,_SYSTEMD_USER_UNIT,USER_UNIT", "--no-pager", "-q")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("journalctl -D %s: %v\n%s", s.JournalDir, err, stderr.Bytes())
	}
	var lines []string
	for line := range bytes.Lines(out) {
		var e map[string]json.RawMessage
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("journal entry %q: %v", line, err)
		}
		field := func(k string) string { return journalString(e[k]) }
		_, attributed := e["_SYSTEMD_USER_UNIT"]
		if field("_SYSTEMD_USER_UNIT") == unit || field("USER_UNIT") == unit ||
			(!attributed && mainPID != "0" && field("_PID") == mainPID) {
			lines = append(lines, field("MESSAGE"))
		}
	}
	return lines[max(0, len(lines)-n):]
}

// journalString decodes a journal JSON field: a string, or an array of bytes
// when the value is not valid UTF-8.
func journalString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var b []byte
	var ints []int
	if json.Unmarshal(raw, &ints) == nil {
		for _, i := range ints {
			b = append(b, byte(i))
		}
	}
	return string(b)
}

// launcherLog returns what the launcher, journald and the manager wrote
// outside the journal (a failed mount, a manager that could not start), for
// errors.
func (s *Systemd) launcherLog() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(launcher log: %v)", err)
	}
	return "launcher log:\n" + string(b)
}

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
