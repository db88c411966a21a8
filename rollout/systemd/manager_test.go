package systemd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/rollout"
	"github.com/pushdeploy/pushdeploy/rollout/systemd"
)

// sleeper is a service that runs until stopped, with a drop-in and a target that wants it.
var sleeper = []rollout.File{
	{Name: "sleeper.service", Content: "[Service]\nType=exec\nExecStart=/bin/sleep 1000\n"},
	{Name: "sleeper.service.d/env.conf", Content: "[Service]\nEnvironment=GREETING=hello\n"},
	{Name: "sleeper.target", Content: "[Unit]\nWants=sleeper.service\n[Install]\nWantedBy=default.target\n"},
}

// TestManager goes through what the engine asks of the adapter, in the order a deploy and a
// removal ask it, and checks each step against the manager's own view.
func TestManager(t *testing.T) {
	t.Parallel()
	sd, m := openManager(t)
	conn := sd.Conn(t)
	ctx := t.Context()
	state := func(unit string) rollout.UnitState {
		t.Helper()
		st, err := m.State(ctx, unit)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	if err := m.Install(ctx, sleeper, nil); err != nil {
		t.Fatalf("install: %v", err)
	}
	checkDisk(t, sd.UnitDir, sleeper)
	if env, err := conn.GetUnitTypePropertyContext(ctx, "sleeper.service", "Service", "Environment"); err != nil ||
		!strings.Contains(env.Value.String(), "GREETING=hello") {
		t.Errorf("sleeper.service Environment: %v (%v), want the drop-in's GREETING=hello: not reloaded", env, err)
	}
	if st := state("sleeper.service"); st.ActiveState != "inactive" || st.MainPID != 0 {
		t.Errorf("installed: %+v, want inactive with no main process", st)
	}

	if err := m.Start(ctx, "sleeper.service"); err != nil {
		t.Fatalf("start: %v", err)
	}
	started := state("sleeper.service")
	if started.ActiveState != "active" || started.SubState != "running" || started.MainPID == 0 || started.Since.IsZero() {
		t.Errorf("started: %+v, want active, running, a main process and since when", started)
	}
	if err := m.Restart(ctx, "sleeper.service"); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if st := state("sleeper.service"); st.ActiveState != "active" || st.MainPID == started.MainPID || !st.Since.After(started.Since) {
		t.Errorf("restarted: %+v, want active with a new main process (was %d) since later than %v", st, started.MainPID, started.Since)
	}

	if err := m.Enable(ctx, "sleeper.target"); err != nil {
		t.Fatalf("enable: %v", err)
	}
	if p, err := conn.GetUnitPropertyContext(ctx, "sleeper.target", "UnitFileState"); err != nil || p.Value.Value() != "enabled" {
		t.Errorf("enabled sleeper.target: UnitFileState %v (%v), want enabled", p, err)
	}
	wants := filepath.Join(sd.UnitDir, "default.target.wants", "sleeper.target")
	if _, err := os.Lstat(wants); err != nil {
		t.Errorf("enabled sleeper.target: %v", err)
	}
	if err := m.Disable(ctx, "sleeper.target"); err != nil {
		t.Fatalf("disable: %v", err)
	}
	if _, err := os.Lstat(wants); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("disabled sleeper.target: %s: %v, want it gone", wants, err)
	}

	if err := m.Stop(ctx, "sleeper.service"); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if st := state("sleeper.service"); st.ActiveState != "inactive" || st.MainPID != 0 {
		t.Errorf("stopped: %+v, want inactive with no main process", st)
	}
	for _, unit := range []string{"sleeper.service", "never-installed.service"} {
		if err := m.Stop(ctx, unit); err != nil {
			t.Errorf("stop %s, stopped already: %v, want nil", unit, err)
		}
	}

	// Removing a drop-in removes its directory, unless something else (an administrator's
	// override) is in it.
	override := filepath.Join(sd.UnitDir, "sleeper.service.d", "override.conf")
	if err := os.WriteFile(override, []byte("[Service]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Install(ctx, nil, []string{"sleeper.service.d/env.conf"}); err != nil {
		t.Fatalf("remove the drop-in: %v", err)
	}
	if _, err := os.Stat(override); err != nil {
		t.Errorf("administrator's override: %v, want it kept", err)
	}
	if err := os.Remove(override); err != nil {
		t.Fatal(err)
	}
	if err := m.Install(ctx, nil, []string{"sleeper.service", "sleeper.target", "sleeper.service.d/gone.conf"}); err != nil {
		t.Fatalf("remove the units (and a file that is not there): %v", err)
	}
	checkDisk(t, sd.UnitDir, nil)
	if p, err := conn.GetUnitPropertyContext(ctx, "sleeper.service", "LoadState"); err != nil || p.Value.Value() != "not-found" {
		t.Errorf("removed sleeper.service: LoadState %v (%v), want not-found: not reloaded", p, err)
	}
}

// TestManager_Start_resetsFailed starts a unit that fails, past its start limit: Start
// resets the failed state and the limit first, so a deliberate start is never refused.
func TestManager_Start_resetsFailed(t *testing.T) {
	t.Parallel()
	_, m := openManager(t, rollout.File{Name: "false.service",
		Content: "[Unit]\nStartLimitIntervalSec=1h\nStartLimitBurst=1\n[Service]\nExecStart=/bin/false\n"})
	for i := range 3 {
		if err := m.Start(t.Context(), "false.service"); err != nil {
			t.Fatalf("start %d: %v, want the job done (the program was started)", i+1, err)
		}
		waitState(t, m, "false.service", "failed")
	}
}

// TestManager_jobError starts and restarts units that cannot start: the job's result is a
// *rollout.JobError saying which.
func TestManager_jobError(t *testing.T) {
	t.Parallel()
	files := []rollout.File{
		{Name: "noexec.service", Content: "[Service]\nType=exec\nExecStart=/no/such/program\n"},
		{Name: "needy.service", Content: "[Unit]\nRequires=noexec.service\nAfter=noexec.service\n[Service]\nExecStart=/bin/sleep 1000\n"},
	}
	_, m := openManager(t, files...)
	tests := []struct {
		op, unit, result string
		f                func(ctx context.Context, unit string) error
	}{
		{"start", "noexec.service", "failed", m.Start},
		{"restart", "noexec.service", "failed", m.Restart},
		{"start", "needy.service", "dependency", m.Start},
	}
	for _, tt := range tests {
		err := tt.f(t.Context(), tt.unit)
		je, ok := errors.AsType[*rollout.JobError](err)
		if !ok || *je != (rollout.JobError{Op: tt.op, Unit: tt.unit, Result: tt.result}) {
			t.Errorf("%s %s: got %v, want a JobError with result %s", tt.op, tt.unit, err, tt.result)
		}
	}
	if st, err := m.State(t.Context(), "noexec.service"); err != nil || st.ActiveState != "failed" || st.Result != "exit-code" {
		t.Errorf("noexec.service: %+v (%v), want failed with result exit-code", st, err)
	}
	// A unit the manager cannot load is an error of the call, not of a job.
	err := m.Start(t.Context(), "missing.service")
	if _, ok := errors.AsType[*rollout.JobError](err); err == nil || ok || !strings.Contains(err.Error(), "start missing.service") {
		t.Errorf("start missing.service: got %v, want an error that is not a JobError", err)
	}
}

func TestOpen_noManager(t *testing.T) {
	_, err := systemd.Open(t.Context(), systemd.Config{Bus: "unix:path=" + filepath.Join(t.TempDir(), "bus"), User: true})
	if err == nil || !strings.Contains(err.Error(), "connect to the systemd user manager") {
		t.Errorf("open: got %v, want a connection error naming the user manager", err)
	}
}
