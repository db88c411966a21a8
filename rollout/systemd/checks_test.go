package systemd_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sandboxCheck is a command health check that tries to act outside the service's rights:
// it records its uid and, for each path given, whether it could create a file there, in its
// state directory (where the service may write), and passes.
const sandboxCheck = `#!/bin/sh
id -u > "$STATE_DIRECTORY/uid"
for f; do
	if touch "$f" 2>/dev/null; then echo "wrote $f"; else echo "refused $f"; fi
done > "$STATE_DIRECTORY/log"
`

// TestEngine_commandCheck_sandbox runs a release's command health check on a real systemd
// user manager: it runs as its check unit with the service's identity and sandbox, so it
// writes its state directory and its own /tmp, and nothing else: neither the release, nor the
// data directory around it, nor /etc or /var/lib, nor the machine's /tmp; and it runs as the
// same uid as the service. (A user
// manager runs everything as its own user, root here; TestLab_commandCheck proves a check
// runs as the service's dynamic user, never root, under a system manager.)
func TestEngine_commandCheck_sandbox(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	tmpProof := filepath.Join(os.TempDir(), fmt.Sprintf("pushdeploy-check-evil-%d", time.Now().UnixNano()))
	targets := []string{"RELEASE/evil", filepath.Join(h.apps, "evil"), "/etc/pushdeploy-check-evil", tmpProof, "/var/lib/pushdeploy-check-evil"}
	argv := `["bin/check"`
	for _, p := range targets {
		argv += fmt.Sprintf(", %q", p)
	}
	argv += "]"
	r := h.release(t, "shop", "v1", `{"services": {"web": {"command": "bin/server", "state_dirs": ["proof"],
		"health": {"command": `+argv+`, "interval": "100ms", "min_healthy_time": "200ms", "healthy_deadline": "10s"}}}}`,
		map[string]string{"bin/server": serverScript, "bin/check": sandboxCheck})
	// The release's own directory, which only the test knows once it is laid out.
	targets[0] = filepath.Join(r.dir, "evil")
	r = h.release(t, "shop", "v1", strings.Replace(mustRead(t, filepath.Join(r.dir, "service.json")), "RELEASE/evil", targets[0], 1),
		map[string]string{"bin/server": serverScript, "bin/check": sandboxCheck})
	t.Cleanup(func() {
		for _, p := range targets {
			os.Remove(p)
		}
	})
	begin := time.Now()
	h.deploy(t, "shop", r, nil)
	t.Logf("deploy with a command check (every 100ms, healthy for 200ms): %v", time.Since(begin).Round(time.Millisecond))

	state := filepath.Join(h.sd.ConfigHome, "pushdeploy-shop-web", "proof")
	log := mustRead(t, filepath.Join(state, "log"))
	t.Logf("the check's own record:\n%s", log)
	for _, p := range targets {
		// /tmp is the check's own (PrivateTmp=), as the service's is: a file there is gone
		// with the check.
		if p != tmpProof && !strings.Contains(log, "refused "+p+"\n") {
			t.Errorf("the check was not refused %s:\n%s", p, log)
		}
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("the check created %s", p)
		}
	}
	uid, err := strconv.Atoi(strings.TrimSpace(mustRead(t, filepath.Join(state, "uid"))))
	if err != nil {
		t.Fatal(err)
	}
	pid := h.props(t, r.instances[0])["MainPID"].(uint32)
	st, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := int(statUID(st)); uid != want {
		t.Errorf("the check ran as uid %d, want the service's %d", uid, want)
	}
}

// TestEngine_commandCheck_failure deploys a release whose command check fails: the deploy
// fails quoting the check unit's own output from the journal, and leaves no check unit
// failed behind.
func TestEngine_commandCheck_failure(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	scripts := map[string]string{"bin/server": serverScript, "bin/check": "#!/bin/sh\necho database unreachable from check\nexit 3\n"}
	json := `{"services": {"web": {"command": "bin/server",
		"health": {"command": ["bin/check"], "timeout": "500ms", "interval": "100ms", "min_healthy_time": "200ms", "healthy_deadline": "1s"}}}}`
	r := h.release(t, "shop", "v1", json, scripts)
	_, err := h.eng.Deploy(t.Context(), h.plan(t, "shop", r), r.installed(), nil)
	if err == nil {
		t.Fatal("deploy succeeded, want its command check to fail it")
	}
	t.Logf("deploy error: %v", err)
	for _, want := range []string{
		`command ["bin/check"] in pushdeploy-shop-web.check@1.service: job failed (Result exit-code)`,
		"database unreachable from check",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if out, _ := h.sd.Command("systemctl", "--user", "--no-pager", "--no-legend", "--plain", "list-units", "--state=failed").CombinedOutput(); strings.Contains(string(out), ".check@") {
		t.Errorf("failed check units left behind:\n%s", out)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// statUID is the owner of a file.
func statUID(fi os.FileInfo) uint32 { return fi.Sys().(*syscall.Stat_t).Uid }
