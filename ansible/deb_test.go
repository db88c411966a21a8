package ansible

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/githttp"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// buildDeb builds the package as `make deb` does, with the repository's own script, into
// a directory of the test's (uncompressed: the test does not ship it), and returns its path.
func buildDeb(t *testing.T) string {
	t.Helper()
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), "../packaging/build-deb.sh", t.TempDir())
	cmd.Env = append(os.Environ(), "DEB_COMPRESSION=none")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("packaging/build-deb.sh (make deb): %v\n%s", err, out)
	}
	deb := strings.TrimSpace(string(out))
	t.Logf("make deb: %s in %v", deb, time.Since(start).Round(100*time.Millisecond))
	return deb
}

// gitDaemon serves the repositories under root with git daemon in the lab's network
// namespace, on its bridge, and returns the base URL the hosts fetch from. It is killed
// in t.Cleanup, before the lab closes.
func gitDaemon(t *testing.T, lab *testenv.Lab, root string) string {
	t.Helper()
	addr := lab.BridgeIP.String() + ":9418"
	cmd := lab.Command(context.Background(), "git", "daemon", "--reuseaddr", "--export-all", "--informative-errors",
		"--base-path="+root, "--listen="+lab.BridgeIP.String(), "--port=9418", root)
	cmd.Env = append(cmd.Env, githttp.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("git daemon in the lab: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // waited for in the cleanup
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := lab.DialContext(t.Context(), "tcp", addr); err == nil {
			c.Close()
			return fmt.Sprintf("git://%s/", addr)
		} else if time.Now().After(deadline) {
			t.Fatalf("git daemon in the lab: not answering on %s: %v", addr, err)
		}
	}
}
