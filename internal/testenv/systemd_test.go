package testenv

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/pushdeploy/pushdeploy/internal/usermanager"
)

// writeUnit writes a unit file into the manager's unit directory.
func writeUnit(t *testing.T, s *Systemd, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.UnitDir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// runJob queues a job through go-systemd and returns its result ("done",
// "failed", …) once the JobRemoved signal arrives.
func runJob(t *testing.T, what string, f jobFunc, unit string) string {
	t.Helper()
	ch := make(chan string, 1)
	if _, err := f(t.Context(), unit, "replace", ch); err != nil {
		t.Fatalf("%s %s: %v", what, unit, err)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s %s: no job result after 10s", what, unit)
		return ""
	}
}

// props reads a service's unit and service properties.
func props(t *testing.T, conn *sddbus.Conn, unit string) map[string]any {
	t.Helper()
	p, err := conn.GetUnitPropertiesContext(t.Context(), unit)
	if err != nil {
		t.Fatalf("properties of %s: %v", unit, err)
	}
	sp, err := conn.GetUnitTypePropertiesContext(t.Context(), unit, "Service")
	if err != nil {
		t.Fatalf("service properties of %s: %v", unit, err)
	}
	for k, v := range sp {
		p[k] = v
	}
	return p
}

// waitState waits until unit's ActiveState is want and returns its properties.
func waitState(t *testing.T, conn *sddbus.Conn, unit, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := props(t, conn, unit)
		if p["ActiveState"] == want {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: ActiveState %v after 5s, want %s", unit, p["ActiveState"], want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartSystemd_Units(t *testing.T) {
	t.Parallel()
	s := StartSystemd(t)
	conn := s.Conn(t)

	// degraded: a unit of the host's own user units failed to start.
	if got := s.Systemctl(t, "show", "-p", "SystemState", "--value"); got != "running" && got != "degraded" {
		t.Errorf("SystemState = %q, want running or degraded", got)
	}

	// A unit written to the unit directory is loaded by a reload over D-Bus.
	writeUnit(t, s, "sleeper.service", "[Service]\nExecStart=/bin/sleep 60\n")
	if err := conn.ReloadContext(t.Context()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := runJob(t, "start", conn.StartUnitContext, "sleeper.service"); got != "done" {
		t.Fatalf("start job result %q, want done", got)
	}
	p := props(t, conn, "sleeper.service")
	if p["ActiveState"] != "active" || p["SubState"] != "running" {
		t.Errorf("after start: %v/%v, want active/running", p["ActiveState"], p["SubState"])
	}
	pid, _ := p["MainPID"].(uint32)
	if pid == 0 {
		t.Fatalf("MainPID = %v, want a pid", p["MainPID"])
	}
	if got := s.Systemctl(t, "is-active", "sleeper.service"); got != "active" {
		t.Errorf("systemctl --user is-active = %q, want active", got)
	}
	main, err := usermanager.FindProcess(int(pid))
	if err != nil {
		t.Fatalf("MainPID %d not running: %v", pid, err)
	}

	if got := runJob(t, "stop", conn.StopUnitContext, "sleeper.service"); got != "done" {
		t.Fatalf("stop job result %q, want done", got)
	}
	if p := props(t, conn, "sleeper.service"); p["ActiveState"] != "inactive" {
		t.Errorf("after stop: ActiveState %v, want inactive", p["ActiveState"])
	}
	if main.Alive() {
		t.Errorf("MainPID %d still running after stop", pid)
	}
}

func TestStartSystemd_FailingUnit(t *testing.T) {
	t.Parallel()
	s := StartSystemd(t)
	conn := s.Conn(t)
	writeUnit(t, s, "false.service", "[Service]\nExecStart=/bin/false\n")
	writeUnit(t, s, "missing.service", "[Service]\nType=exec\nExecStart=/nonexistent/binary\n")
	writeUnit(t, s, "sandbox.service", "[Service]\nType=exec\nExecStart=/bin/sleep 60\nReadOnlyPaths=/nonexistent/path\n")
	writeUnit(t, s, "boom.service", "[Service]\nExecStart=/bin/sh -c 'echo boom on stdout; echo boom on stderr >&2; exit 3'\n")
	if err := conn.ReloadContext(t.Context()); err != nil {
		t.Fatalf("reload: %v", err)
	}

	// Job result "done" means spawned, not healthy (REFERENCE.md §3): a
	// Type=simple unit that exits at once reports done, then turns failed.
	for _, unit := range []string{"false.service", "boom.service"} {
		if got := runJob(t, "start", conn.StartUnitContext, unit); got != "done" {
			t.Errorf("start %s: job result %q, want done", unit, got)
		}
		p := waitState(t, conn, unit, "failed")
		if p["Result"] != "exit-code" {
			t.Errorf("%s: Result %v, want exit-code", unit, p["Result"])
		}
		if got := runJob(t, "restart", conn.RestartUnitContext, unit); got != "done" {
			t.Errorf("restart %s: job result %q, want done", unit, got)
		}
		waitState(t, conn, unit, "failed")
	}
	// Type=exec waits for the execve: failing it (203/EXEC, or 226/NAMESPACE
	// for a sandbox) fails the job itself.
	for unit, status := range map[string]int32{"missing.service": 203, "sandbox.service": 226} {
		if got := runJob(t, "start", conn.StartUnitContext, unit); got != "failed" {
			t.Errorf("start %s (Type=exec): job result %q, want failed", unit, got)
		}
		if p := props(t, conn, unit); p["ActiveState"] != "failed" || p["ExecMainStatus"] != status {
			t.Errorf("%s: %v, status %v, want failed, %d", unit, p["ActiveState"], p["ExecMainStatus"], status)
		}
	}
	if p := props(t, conn, "boom.service"); p["ExecMainStatus"] != int32(3) {
		t.Errorf("boom.service: ExecMainStatus %v, want 3", p["ExecMainStatus"])
	}

	// The last run is in the journal, output and the manager's verdict (in
	// no fixed order: they reach journald on different sockets), and the
	// manager's lines of the first run before it.
	lines := s.JournalLines(t, "boom.service", 100)
	last := lines[max(0, len(lines)-5):]
	for _, want := range []string{
		"Started boom.service.",
		"boom on stdout",
		"boom on stderr",
		"boom.service: Main process exited, code=exited, status=3/NOTIMPLEMENTED",
		"boom.service: Failed with result 'exit-code'.",
	} {
		if !slices.Contains(last, want) {
			t.Errorf("last 5 journal lines of boom.service: no %q; journal:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	if n := count(lines, "boom.service: Failed with result 'exit-code'."); n != 2 {
		t.Errorf("journal of boom.service: %d failures, want 2; journal:\n%s", n, strings.Join(lines, "\n"))
	}
	if got := s.JournalLines(t, "boom.service", 2); !slices.Equal(got, lines[len(lines)-2:]) {
		t.Errorf("last 2 lines = %q, want %q", got, lines[len(lines)-2:])
	}
	if lines := s.JournalLines(t, "never-started.service", 10); len(lines) != 0 {
		t.Errorf("journal of a unit that never ran: %q, want none", lines)
	}
}

func count(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if l == s {
			n++
		}
	}
	return n
}

// Hardening that fails with 226/NAMESPACE under a bare user manager works
// here, and so do DynamicUser= and the usual protections.
func TestStartSystemd_Sandboxing(t *testing.T) {
	t.Parallel()
	s := StartSystemd(t)
	conn := s.Conn(t)
	// Type=exec: a sandbox the manager cannot set up fails the start job.
	writeUnit(t, s, "hardened.service", `[Service]
Type=exec
ExecStart=/bin/sleep 60
DynamicUser=yes
ProtectHome=yes
ProtectKernelTunables=yes
ProtectKernelLogs=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
ProtectSystem=strict
ProtectProc=invisible
ProtectClock=yes
ProtectHostname=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
PrivateNetwork=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
SystemCallFilter=@system-service
SystemCallArchitectures=native
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
`)
	if err := conn.ReloadContext(t.Context()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	got := runJob(t, "start", conn.StartUnitContext, "hardened.service")
	p := props(t, conn, "hardened.service")
	if got != "done" {
		t.Errorf("start job result %q, want done", got)
	}
	if p["ActiveState"] != "active" {
		t.Fatalf("hardened.service: %v (%v, status %v), want active; journal:\n%s", p["ActiveState"], p["Result"],
			p["ExecMainStatus"], strings.Join(s.JournalLines(t, "hardened.service", 10), "\n"))
	}
	pid := p["MainPID"].(uint32)
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(int(pid)), "status"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := statusField(string(status), "Uid"); uid == "" || strings.HasPrefix(uid, "0\t") {
		t.Errorf("DynamicUser=yes: Uid %q, want a dynamic (non-root) uid", uid)
	}
	// ProtectHome=yes: /root is an inaccessible empty directory for the unit.
	if fi, err := os.Stat(filepath.Join("/proc", strconv.Itoa(int(pid)), "root", "root")); err != nil {
		t.Errorf("ProtectHome=yes: /root in the unit: %v", err)
	} else if fi.Mode().Perm() != 0 {
		t.Errorf("ProtectHome=yes: /root in the unit has mode %v, want 000", fi.Mode().Perm())
	}
}

func statusField(status, key string) string {
	for line := range strings.SplitSeq(status, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Two managers run units with the same name without touching each other's.
func TestStartSystemd_Parallel(t *testing.T) {
	t.Parallel()
	a, b := StartSystemd(t), StartSystemd(t)
	ca, cb := a.Conn(t), b.Conn(t)
	for _, m := range []struct {
		s    *Systemd
		conn *sddbus.Conn
	}{{a, ca}, {b, cb}} {
		writeUnit(t, m.s, "same.service", "[Service]\nExecStart=/bin/sleep 60\n")
		if err := m.conn.ReloadContext(t.Context()); err != nil {
			t.Fatalf("reload: %v", err)
		}
		if got := runJob(t, "start", m.conn.StartUnitContext, "same.service"); got != "done" {
			t.Fatalf("start job result %q, want done", got)
		}
	}
	pa, pb := props(t, ca, "same.service"), props(t, cb, "same.service")
	if pa["ControlGroup"] == pb["ControlGroup"] {
		t.Fatalf("both managers put same.service in cgroup %v", pa["ControlGroup"])
	}
	if got := runJob(t, "stop", ca.StopUnitContext, "same.service"); got != "done" {
		t.Fatalf("stop job result %q, want done", got)
	}
	if p := props(t, cb, "same.service"); p["ActiveState"] != "active" || p["MainPID"] != pb["MainPID"] {
		t.Errorf("other manager's same.service after stop: %v pid %v, want active pid %v", p["ActiveState"], p["MainPID"], pb["MainPID"])
	}
	if out := b.Systemctl(t, "list-units", "--no-legend", "same.service"); !strings.Contains(out, "running") {
		t.Errorf("systemctl --user list-units on the other manager: %q, want same.service running", out)
	}
}

// After cleanup no process of the manager is left, its mount namespace is
// gone with them, its cgroups are removed, and the host never saw its mounts.
func TestStartSystemd_Cleanup(t *testing.T) {
	t.Parallel()
	_, hostErr := os.Stat("/run/systemd/system")
	var (
		s       *Systemd
		procs   []usermanager.Process
		ns      string
		tmpDirs []string
	)
	// Leftovers of earlier runs, or of other managers, are not ours.
	tmpDirs, _ = filepath.Glob("/tmp/systemd-private-*-cleanup-check.service-*")
	t.Run("run", func(t *testing.T) {
		s = StartSystemd(t)
		conn := s.Conn(t)
		writeUnit(t, s, "cleanup-check.service", "[Service]\nExecStart=/bin/sleep 60\nPrivateTmp=yes\n")
		if err := conn.ReloadContext(t.Context()); err != nil {
			t.Fatalf("reload: %v", err)
		}
		if got := runJob(t, "start", conn.StartUnitContext, "cleanup-check.service"); got != "done" {
			t.Fatalf("start job result %q, want done", got)
		}
		procs = s.m.Processes()
		// launcher, journald, dbus-daemon, watcher, manager, sleep
		if len(procs) < 6 {
			t.Errorf("processes in the manager's cgroups: %v, want at least 6", procs)
		}
		var err error
		if ns, err = os.Readlink(filepath.Join("/proc", strconv.Itoa(s.m.PID()), "ns", "mnt")); err != nil {
			t.Fatal(err)
		}
		if own, _ := os.Readlink("/proc/self/ns/mnt"); own == ns {
			t.Errorf("manager runs in the test's mount namespace %s", ns)
		}
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(s.m.PID()), "root", "run", "systemd", "system")); err != nil {
			t.Errorf("/run/systemd/system in the namespace: %v", err)
		}
		if _, err := os.Stat("/run/systemd/system"); hostErr != nil && err == nil {
			t.Error("/run/systemd/system appeared on the host")
		}
		before := tmpDirs
		tmpDirs, _ = filepath.Glob("/tmp/systemd-private-*-cleanup-check.service-*")
		if len(tmpDirs) <= len(before) {
			t.Error("PrivateTmp=yes: no new /tmp/systemd-private-*-cleanup-check.service-* while running")
		}
	})
	if s == nil {
		Unavailable(t, "systemd user manager", "none started (see the run subtest)")
	}
	if t.Failed() {
		return
	}

	for _, p := range procs {
		if p.Alive() {
			t.Errorf("process %d still running after cleanup", p.PID)
		}
	}
	// A process of the cleanup itself may still be on its way out when Stop returns (its
	// parent reaps it a moment later): only one still there after a grace period is a leak.
	inNamespace := func() []string {
		var pids []string
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt")); err == nil && l == ns {
				pids = append(pids, e.Name())
			}
		}
		return pids
	}
	left := inNamespace()
	for deadline := time.Now().Add(2 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = inNamespace() {
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range left {
		comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		t.Errorf("process %s (%s) still in the manager's mount namespace %s 2s after cleanup", pid, strings.TrimSpace(string(comm)), ns)
	}
	cgroups, err := s.m.Cgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cgroups {
		t.Errorf("cgroup %s left", d)
	}
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mountinfo), s.JournalDir) {
		t.Errorf("journal bind mount visible on the host")
	}
	for _, d := range tmpDirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("PrivateTmp directory %s left", d)
		}
	}
	if _, err := os.Stat(s.RuntimeDir); err == nil {
		t.Errorf("runtime dir %s left", s.RuntimeDir)
	}
}
