package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// TestAgent_hostileServiceFile pushes releases whose service.json the agent must not read:
// a symlink out of the release (to /etc/passwd, to a FIFO elsewhere, which once blocked the
// app's queue for good), a FIFO in the release, a file too big. Each deploy fails at once
// with an error naming the file and what it is, quoting nothing behind it; the running
// release keeps running; and the next good push deploys (the queue goes on).
func TestAgent_hostileServiceFile(t *testing.T) {
	sd := testenv.StartSystemd(t)
	hello := testenv.HelloBinary(t)
	port := testenv.FreePorts(t, 1)
	f := newFixture(t, func(c *config.Config) { onSystemd(t, c, sd, 200*time.Millisecond) })
	serviceJSON := fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "port": %d}}}`, port)
	f.repo.Write("bin/hello", hello, 0o755)
	write := func(version string) {
		f.repo.Write("VERSION", version+"\n", 0o644)
		f.repo.Write("service.json", serviceJSON, 0o644)
	}
	write("1")
	if d := f.pushAndDeploy(f.repo.Commit("version 1")); d.Status != state.StatusSucceeded {
		t.Fatalf("version 1: %s (%s)", d.Status, d.Error)
	}
	good := f.current()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		push func() string // commits the release and returns its sha
		want string
	}{
		{"symlink to /etc/passwd", func() string {
			f.repo.Symlink("service.json", "/etc/passwd")
			return f.repo.Commit("service.json -> /etc/passwd")
		}, `service.json: not a regular file (symlink to "/etc/passwd")`},
		{"symlink to a fifo elsewhere", func() string {
			f.repo.Symlink("service.json", fifo)
			return f.repo.Commit("service.json -> a fifo")
		}, `service.json: not a regular file (symlink to "` + fifo + `")`},
		{"ndm package.json symlink to a fifo", func() string {
			f.repo.Write("service.json", `{"web": {"start": "bin/hello"}}`, 0o644)
			f.repo.Symlink("package.json", fifo)
			return f.repo.Commit("package.json -> a fifo")
		}, `package.json: not a regular file (symlink to "` + fifo + `")`},
		{"fifo in the release", func() string {
			// No git tree holds a FIFO: lay the release out as one would be found on disk.
			write("fifo")
			f.repo.Remove("package.json")
			sha := f.repo.Commit("a release with a fifo for service.json")
			dir := f.cfg.Layout().Release("web", sha)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(filepath.Join(dir, "service.json"), 0o644); err != nil {
				t.Fatal(err)
			}
			return sha
		}, "service.json: not a regular file (fifo)"},
		{"huge service.json", func() string {
			f.repo.Write("service.json", `{"services": {}, "padding": "`+strings.Repeat("x", 2<<20)+`"}`, 0o644)
			return f.repo.Commit("a 2 MiB service.json")
		}, "service.json: 2097183 bytes, larger than 1048576: refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := f.pushAndDeploy(tt.push())
			took := d.Finished.Sub(d.Started)
			t.Logf("deploy %s in %v: %s", d.Status, took.Round(time.Millisecond), d.Error)
			if d.Status != state.StatusFailed || !strings.Contains(d.Error, tt.want) {
				t.Fatalf("got %s (%s), want failed with %q", d.Status, d.Error, tt.want)
			}
			if took > 10*time.Second {
				t.Errorf("the deploy took %v to fail: it must not wait on the file", took)
			}
			if strings.Contains(d.Error, "root:") {
				t.Errorf("the error quotes what is behind the symlink: %s", d.Error)
			}
			if got := f.current(); got != good {
				t.Errorf("current: %.12s, want %.12s kept", got, good)
			}
			if got := get(url); got != "hello from version 1" {
				t.Errorf("the running release: got %q, want version 1 still serving", got)
			}
		})
	}

	f.repo.Remove("package.json")
	write("2")
	if d := f.pushAndDeploy(f.repo.Commit("version 2")); d.Status != state.StatusSucceeded {
		t.Fatalf("version 2 after the refused ones: %s (%s)", d.Status, d.Error)
	}
	if got := get(url); got != "hello from version 2" {
		t.Errorf("after version 2: got %q", got)
	}
}
