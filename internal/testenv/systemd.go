package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/pushdeploy/pushdeploy/internal/usermanager"
)

// Systemd is a real systemd user manager private to one test, started by StartSystemd and
// stopped in t.Cleanup. It is a usermanager.Manager (whose package comment says how it
// runs and what tests can rely on) tied to the test's lifetime.
type Systemd struct {
	// RuntimeDir is XDG_RUNTIME_DIR (mode 0700): the bus socket, the manager's private
	// socket and every unit's runtime directory. It is short (under os.TempDir) because
	// unix socket paths are limited to 107 bytes.
	RuntimeDir string
	// ConfigHome is XDG_CONFIG_HOME. StateDirectory= of a unit lands here.
	ConfigHome string
	// UnitDir is ConfigHome/systemd/user, where a user manager loads units from: write
	// units here, then reload.
	UnitDir string
	// Home is HOME.
	Home string
	// JournalDir holds the journal files, in JournalDir/journal (`journalctl -D
	// JournalDir/journal`).
	JournalDir string
	// BusAddress is the session bus address, "unix:path=RuntimeDir/bus".
	BusAddress string
	// Env is what a command needs to talk to this manager as `systemctl --user` would:
	// DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR, HOME and XDG_CONFIG_HOME. Append it to
	// os.Environ() (later entries win). The test process's own environment is never
	// changed.
	Env []string

	m *usermanager.Manager
}

// StartSystemd starts a systemd user manager with its own D-Bus session bus and journald
// for the test (usermanager.Start), waits until the manager runs, and stops everything in
// t.Cleanup: the units, then the manager, journald and the launcher, each waited for by
// its parent; then the cgroup subtree is checked empty and removed. A process still alive
// then fails the test.
//
// It calls Unavailable, saying why, only when the machine cannot run it: not root, no
// CAP_SYS_ADMIN (unshare -m and mount need it), no writable cgroup hierarchy for systemd,
// or one of unshare, mount, dbus-daemon, systemctl, journalctl, /lib/systemd/systemd or
// /lib/systemd/systemd-journald missing. Everything else is a test failure.
func StartSystemd(t testing.TB) *Systemd {
	t.Helper()
	start := time.Now()
	m, err := usermanager.Start(usermanager.Options{Dir: t.TempDir(), Name: "pushdeploy-test", Logf: t.Logf})
	if ue := (*usermanager.UnavailableError)(nil); errors.As(err, &ue) {
		Unavailable(t, "systemd user manager", "%v", ue.Reason)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd user manager running after %v (runtime dir %s)", time.Since(start).Round(time.Millisecond), m.RuntimeDir)
	t.Cleanup(func() {
		t.Helper()
		start := time.Now()
		if err := m.Stop(); err != nil {
			t.Error(err)
		}
		t.Logf("systemd user manager stopped in %v", time.Since(start).Round(time.Millisecond))
	})
	return &Systemd{
		RuntimeDir: m.RuntimeDir,
		ConfigHome: m.ConfigHome,
		UnitDir:    m.UnitDir,
		Home:       m.Home,
		JournalDir: m.LogDir,
		BusAddress: m.BusAddress,
		Env:        m.Env,
		m:          m,
	}
}

// Conn returns a go-systemd connection to this manager, closed in t.Cleanup (before the
// manager stops). See usermanager.Manager.Conn.
func (s *Systemd) Conn(t testing.TB) *sddbus.Conn {
	t.Helper()
	conn, err := s.m.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// Command returns a command (systemctl, systemd-run, systemd-analyze, …) with Env added to
// the test's environment, for callers that want the exit status.
func (s *Systemd) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), s.Env...)
	return cmd
}

// Systemctl runs `systemctl --user ARGS…` against this manager and returns its combined
// output, trimmed. A non-zero exit fails the test; use Command for commands whose exit
// status is the answer (is-active, is-failed).
func (s *Systemd) Systemctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.Command("systemctl", append([]string{"--user", "--no-pager"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl --user %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// SyncJournal makes the manager's journald write out everything it has received
// (usermanager.Manager.SyncJournal): the Sync of a rollout/systemd.Config (or an sdbus.JournalConfig) for this manager.
func (s *Systemd) SyncJournal(ctx context.Context) error { return s.m.SyncJournal(ctx) }

// PauseJournal stops the manager's journald (SIGSTOP) until resume is called, or the test
// ends: lines sent meanwhile wait in its sockets, and are attributed to a unit only if
// their sender still runs when journald goes on, which makes journald's race with a
// process that exits at once certain.
func (s *Systemd) PauseJournal(t testing.TB) (resume func()) {
	t.Helper()
	var pid int
	for _, p := range s.m.Processes() {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.PID)); err == nil && string(comm) == "systemd-journal\n" {
			pid = p.PID
		}
	}
	if pid == 0 {
		t.Fatal("pause journald: no systemd-journald among the manager's processes")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("pause journald: %v", err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("resume journald: %v", err)
			}
		})
	}
	t.Cleanup(resume)
	return resume
}

// JournalLines returns the last n journal messages of unit, oldest first, as `journalctl
// --user -u UNIT -n N -o cat` would show them (usermanager.Manager.JournalLines says how
// lines are attributed). An error fails the test.
func (s *Systemd) JournalLines(t testing.TB, unit string, n int) []string {
	t.Helper()
	lines, err := s.m.JournalLines(t.Context(), unit, n)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}
