package usermanager_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/internal/usermanager"
)

// start starts a manager for a test, ending the test through testenv.Unavailable where the
// machine cannot run one. The caller stops it.
func start(t *testing.T, opts usermanager.Options) *usermanager.Manager {
	t.Helper()
	m, err := usermanager.Start(opts)
	if ue := (*usermanager.UnavailableError)(nil); errors.As(err, &ue) {
		testenv.Unavailable(t, "systemd user manager", "%v", ue.Reason)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUnavailableError(t *testing.T) {
	reason := errors.New("needs root")
	err := error(&usermanager.UnavailableError{Reason: reason})
	if !errors.Is(err, usermanager.ErrUnavailable) {
		t.Errorf("errors.Is(%v, ErrUnavailable) = false, want true", err)
	}
	if !errors.Is(err, reason) {
		t.Errorf("errors.Is(%v, reason) = false, want true", err)
	}
	if got, want := err.Error(), "systemd user manager unavailable: needs root"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if errors.Is(errors.New("other"), usermanager.ErrUnavailable) {
		t.Error("an unrelated error matches ErrUnavailable")
	}
}

// Without a Dir, Start creates one and Stop removes it with everything else; the journal
// is readable with `journalctl -D JournalDir` while the manager runs.
func TestStart_ownDir(t *testing.T) {
	t.Parallel()
	var logged []string
	m := start(t, usermanager.Options{Logf: func(f string, args ...any) { logged = append(logged, f) }})
	stopped := false
	defer func() {
		if !stopped {
			m.Stop()
		}
	}()
	for _, d := range []string{m.RuntimeDir, m.Home, m.UnitDir, m.JournalDir} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want a directory", d, err)
		}
	}
	if !strings.HasPrefix(m.Cgroup, usermanager.DefaultName+"-") {
		t.Errorf("Cgroup = %q, want prefix %s-", m.Cgroup, usermanager.DefaultName)
	}
	if !slices.Contains(m.Env, "DBUS_SESSION_BUS_ADDRESS="+m.BusAddress) {
		t.Errorf("Env %q lacks the bus address %s", m.Env, m.BusAddress)
	}
	out, err := m.Command(t.Context(), "systemctl", "--user", "show", "-p", "SystemState", "--value").CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || (got != "running" && got != "degraded") {
		t.Errorf("systemctl --user show -p SystemState: %q (%v), want running or degraded", got, err)
	}
	// The unit outlives its output: journald attributes a user unit's stream only while it
	// can read the process's cgroup (see doc.go); this checks the journal directory, not that race.
	if err := os.WriteFile(filepath.Join(m.UnitDir, "hello.service"), []byte("[Service]\nType=exec\nExecStart=/bin/sh -c 'echo hello from the unit; sleep 0.5'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := m.Command(t.Context(), "systemctl", "--user", "daemon-reload").CombinedOutput(); err != nil {
		t.Fatalf("daemon-reload: %v\n%s", err, out)
	}
	if out, err := m.Command(t.Context(), "systemctl", "--user", "start", "hello.service").CombinedOutput(); err != nil {
		t.Fatalf("start hello.service: %v\n%s", err, out)
	}
	var journal string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_ = m.SyncJournal(t.Context()) // best effort: the loop polls until the line is there
		out, _ := exec.Command("journalctl", "-D", m.JournalDir, "--user-unit", "hello.service", "-o", "cat", "--no-pager", "-q").Output()
		if journal = string(out); strings.Contains(journal, "hello from the unit") {
			break
		}
	}
	if !strings.Contains(journal, "hello from the unit") {
		t.Errorf("journalctl -D %s --user-unit hello.service:\n%s\nwant the unit's output", m.JournalDir, journal)
	}

	procs := m.Processes()
	stopped = true
	if err := m.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := m.Stop(); err != nil {
		t.Errorf("second Stop: %v, want nil", err)
	}
	for _, p := range procs {
		if p.Alive() {
			t.Errorf("process %v still running after Stop", p)
		}
	}
	for _, d := range []string{m.RuntimeDir, usermanager.Dir(m)} {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after Stop: %v, want removed", d, err)
		}
	}
	if left, err := m.Cgroups(); err != nil || len(left) > 0 {
		t.Errorf("cgroups after Stop: %q (%v), want none", left, err)
	}
	if len(logged) > 0 {
		t.Errorf("Stop logged %q, want nothing for a clean stop", logged)
	}
}

// A Dir given to Start stays, with the journal in it; the runtime directory goes.
func TestStart_givenDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := start(t, usermanager.Options{Dir: dir, Name: "pushdeploy-usermanager-test"})
	if !strings.HasPrefix(m.UnitDir, dir+"/") || !strings.HasPrefix(m.JournalDir, dir+"/") {
		t.Errorf("UnitDir %s, JournalDir %s: want both under %s", m.UnitDir, m.JournalDir, dir)
	}
	if err := m.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(m.RuntimeDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runtime dir after Stop: %v, want removed", err)
	}
	if ents, err := os.ReadDir(m.JournalDir); err != nil || len(ents) == 0 {
		t.Errorf("journal dir after Stop: %d entries (%v), want the journal kept", len(ents), err)
	}
}
