package procgroup

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether the process whose pid is in file still runs.
func alive(t *testing.T, file string) bool {
	t.Helper()
	var b []byte
	for range 100 { // the shell writes the pid file a moment after it starts
		if b, _ = os.ReadFile(file); len(b) > 0 && b[len(b)-1] == '\n' {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %q", file, b)
	}
	for range 100 { // a killed process is gone once its parent (init) reaps it
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return false
		}
		var st []byte
		if st, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		stop    syscall.Signal
		wantOut string
		wantErr string // "" for success
	}{
		{name: "output of both streams", script: "echo out; echo err >&2", wantOut: "out\nerr\n"},
		{name: "exit status", script: "echo bye; exit 3", wantOut: "bye\n", wantErr: "exit status 3"},
		{name: "a background child is killed with the group", script: "sleep 60 & echo $! > $PIDFILE; echo started", wantOut: "started\n"},
		{name: "timeout kills the group", script: "sleep 60 & echo $! > $PIDFILE; wait", timeout: 200 * time.Millisecond, stop: syscall.SIGKILL, wantErr: "signal: killed"},
		{name: "timeout with SIGTERM", script: "sleep 60 & echo $! > $PIDFILE; wait", timeout: 200 * time.Millisecond, stop: syscall.SIGTERM, wantErr: "signal: terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			pidFile := filepath.Join(t.TempDir(), "pid")
			cmd := exec.CommandContext(ctx, "/bin/sh", "-c", tt.script)
			cmd.Env = []string{"PIDFILE=" + pidFile}
			var out bytes.Buffer
			err := Run(cmd, &out, tt.stop, nil)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error: got %v, want %q", err, tt.wantErr)
			}
			if out.String() != tt.wantOut {
				t.Errorf("output: got %q, want %q", out.String(), tt.wantOut)
			}
			if strings.Contains(tt.script, "PIDFILE") && alive(t, pidFile) {
				t.Errorf("the group's background process outlived Run")
			}
		})
	}
}

// TestRun_escapedProcess: a process that left the group (setsid) and holds the pipe does
// not hold Run for longer than OutputGrace.
func TestRun_escapedProcess(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.CommandContext(t.Context(), "/bin/sh", "-c", `setsid /bin/sh -c 'echo $$ > "$PIDFILE"; exec sleep 30' & echo done`)
	cmd.Env = []string{"PIDFILE=" + pidFile}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL) // the escaped process is this test's to end
			}
		}
	})
	begin := time.Now()
	var out bytes.Buffer
	if err := Run(cmd, &out, syscall.SIGKILL, nil); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Run took %v with an escaped process holding the pipe, want about %v", took, OutputGrace)
	}
	if out.String() != "done\n" {
		t.Errorf("output: got %q", out.String())
	}
}

// TestKillLeft starts a script's process group as Run would and leaves it, as a parent
// killed with SIGKILL does: KillLeft ends it, with its background child, only when the
// marker is in its environment.
func TestKillLeft(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & echo $! > $PIDFILE; wait")
	cmd.Env = []string{"PIDFILE=" + pidFile, "PUSHDEPLOY_DEPLOY_ID=d-1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { Kill(cmd.Process.Pid, syscall.SIGKILL); <-exited })
	if !alive(t, pidFile) {
		t.Fatal("the background child did not start")
	}
	for _, marker := range []string{"PUSHDEPLOY_DEPLOY_ID=d-2", "PUSHDEPLOY_DEPLOY_ID=d-", "DEPLOY_ID=d-1"} {
		if n, err := KillLeft(cmd.Process.Pid, marker, time.Second); n != 0 || err != nil {
			t.Errorf("KillLeft with marker %q: got %d, %v; want 0, nil (not this group)", marker, n, err)
		}
	}
	if !alive(t, pidFile) {
		t.Fatal("a group without the marker was killed")
	}
	n, err := KillLeft(cmd.Process.Pid, "PUSHDEPLOY_DEPLOY_ID=d-1", 5*time.Second)
	if err != nil || n != 2 {
		t.Errorf("KillLeft: got %d, %v; want 2 processes, nil", n, err)
	}
	if alive(t, pidFile) {
		t.Error("the group's background child outlived KillLeft")
	}
	if n, err := KillLeft(cmd.Process.Pid, "PUSHDEPLOY_DEPLOY_ID=d-1", time.Second); n != 0 || err != nil {
		t.Errorf("KillLeft of a group that is gone: got %d, %v; want 0, nil", n, err)
	}
}
