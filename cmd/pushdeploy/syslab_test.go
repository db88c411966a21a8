package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// A booted Debian host running the agent the way a production host does: as root, as a
// system service of the host's own systemd (PID 1), deploying into the system manager
// (systemd.scope: system, the default), fetching from a git server in the lab.
const (
	sysAgentUnit   = "pushdeploy-agent"
	sysAgentConfig = "/etc/pushdeploy/agent.yaml"
	sysSecret      = "lab-secret"
	sysPort        = 8000 // the demo app's base port in the host
)

// sysHost is a lab host with the agent running and a repository it deploys from.
type sysHost struct {
	t     *testing.T
	lab   *testenv.Lab
	host  *testenv.Host
	repo  *testenv.Repo
	bare  *testenv.Bare
	hook  string // the agent's webhook URL, from the lab
	hello string // the demo's static hello server, built for the host
}

// staticBuild builds a static binary of pkg (no cgo: no libc to match in the host).
func staticBuild(t *testing.T, pkg, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// startSysHost boots a host, copies the agent in, writes a system-scope configuration and
// starts the agent as a system service with systemd-run, and waits until it answers.
func startSysHost(t *testing.T) *sysHost {
	t.Helper()
	agent := staticBuild(t, ".", "pushdeploy")
	hello, err := os.ReadFile(staticBuild(t, "../../scripts/demo/hello", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	lab := testenv.StartLab(t, testenv.LabOptions{})
	h := lab.Boot(t, "web-1")
	boot := time.Since(begin)
	s := &sysHost{t: t, lab: lab, host: h, repo: testenv.NewRepo(t)}
	root := testenv.NewRoot(t)
	s.bare = testenv.NewBare(t, root, "acme/web.git", true)
	remote := lab.GitHTTP(t, root) + "acme/web.git"

	s.hello = string(hello)
	h.CopyIn(t, agent, "/usr/local/bin/pushdeploy")
	h.WriteFile(t, "/etc/pushdeploy/web.secret", []byte(sysSecret+"\n"), 0o600)
	h.WriteFile(t, sysAgentConfig, []byte(`listen: "0.0.0.0:5757"
data_dir: /var/lib/pushdeploy
environments: [production]
systemd:
  settle: 500ms
apps:
  web:
    repo: acme/web
    remote: `+remote+`
    secret_file: /etc/pushdeploy/web.secret
`), 0o600)
	started := time.Now()
	h.Exec(t, "systemd-run", "--quiet", "--unit="+sysAgentUnit, "--property=Restart=no",
		"/usr/local/bin/pushdeploy", "agent", "--config", sysAgentConfig, "--log-format", "json")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := h.Run(context.Background(), "journalctl", "--no-pager", "-n", "60", "-u", sysAgentUnit)
			t.Logf("agent journal:\n%s", out)
		}
	})
	s.hook = fmt.Sprintf("http://%s:5757/webhook/web", h.IP())
	healthz := fmt.Sprintf("http://%s:5757/healthz", h.IP())
	client := lab.HTTPClient()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get(healthz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent does not answer %s: %v", healthz, err)
		}
	}
	t.Logf("lab and host up in %v; agent answering %v after systemd-run", boot.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	return s
}

// push commits what the repository holds, pushes it to deploy-production, delivers the
// signed webhook from the lab and waits for the deploy to end, read with the CLI in the
// host (over the agent's admin socket).
func (s *sysHost) push(msg string) (*state.Deploy, string) {
	t := s.t
	t.Helper()
	sha := s.repo.Commit(msg)
	s.repo.Push(s.bare, "main:deploy-production")
	payload, err := hooks.PushPayload(hooks.PushInput{Repo: "acme/web", Ref: "refs/heads/deploy-production",
		Before: strings.Repeat("0", 40), After: sha, Pusher: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	ans, err := hooks.Send(t.Context(), s.lab.HTTPClient(), s.hook, []byte(sysSecret), "push", payload)
	if err != nil || ans.StatusCode != 202 {
		t.Fatalf("webhook for %.12s: %+v, %v", sha, ans, err)
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err := s.host.Run(t.Context(), "pushdeploy", "history", "web", ans.Deploy, "--json", "--config", sysAgentConfig)
		if err != nil {
			continue
		}
		var got struct {
			Deploy state.Deploy `json:"deploy"`
			Log    string       `json:"log"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("history --json: %v\n%s", err, out)
		}
		if got.Deploy.Status.Final() {
			t.Logf("%s (%.12s): %s in %v", msg, sha, got.Deploy.Status, time.Since(begin).Round(time.Millisecond))
			return &got.Deploy, got.Log
		}
	}
	t.Fatalf("deploy %s of %.12s did not finish", ans.Deploy, sha)
	return nil, ""
}

// release writes the demo app: the hello server, its VERSION, and service.json.
func (s *sysHost) release(version, serviceJSON string) {
	s.repo.Write("bin/hello", s.hello, 0o755)
	s.repo.Write("VERSION", version+"\n", 0o644)
	s.repo.Write("service.json", serviceJSON, 0o644)
}

// answers fetches http://127.0.0.1:PORT/ in the host (hello listens there only).
func (s *sysHost) answers(port int) string {
	out, err := s.host.Run(s.t.Context(), "python3", "-c",
		"import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())",
		fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(string(out))
}

// uidOf is the uid the main process of unit runs as, in the host.
func (s *sysHost) uidOf(unit string) int {
	t := s.t
	t.Helper()
	pid := s.host.Exec(t, "systemctl", "show", "-p", "MainPID", "--value", unit)
	uid, err := strconv.Atoi(s.host.Exec(t, "stat", "-c", "%u", "/proc/"+pid))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// dynamicUID reports whether uid is in systemd's range for dynamic users.
func dynamicUID(uid int) bool { return uid >= 61184 && uid <= 65519 }

func webJSON(health string, extra string) string {
	return fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": %d%s,
		"health": {%s, "interval": "200ms", "min_healthy_time": "500ms", "healthy_deadline": "5s"}}}}`, sysPort, extra, health)
}

// TestLab_systemScope is issue #10's items 4 and 5 on a real host: the agent as a system
// service of a booted Debian host, deploying into the system manager. A push starts the
// demo app's instances as dynamic users, which can reach their release on a fresh host
// (data_dir's modes); a second push rolls over health-checked; a sick release is reverted
// by the host; and a command health check runs as the service's dynamic user in its
// sandbox, never as root.
func TestLab_systemScope(t *testing.T) {
	s := startSysHost(t)
	h := s.host

	s.release("1", webJSON(`"http": "/health"`, ""))
	d, _ := s.push("version 1")
	if d.Status != state.StatusSucceeded {
		t.Fatalf("version 1: %s (%s)", d.Status, d.Error)
	}
	var uids []int
	for n := 1; n <= 2; n++ {
		unit := fmt.Sprintf("pushdeploy-web-web@%d.service", n)
		if got := s.answers(sysPort + n - 1); got != "hello from version 1" {
			t.Errorf("instance %d: %q, want version 1", n, got)
		}
		dyn, user := h.Exec(t, "systemctl", "show", "-p", "DynamicUser", "--value", unit), h.Exec(t, "systemctl", "show", "-p", "User", "--value", unit)
		if dyn != "yes" || user != "pushdeploy-web-web" {
			t.Errorf("%s: DynamicUser=%s User=%s, want yes and pushdeploy-web-web", unit, dyn, user)
		}
		uids = append(uids, s.uidOf(unit))
	}
	if !dynamicUID(uids[0]) || uids[0] != uids[1] {
		t.Errorf("instances run as uids %v, want one dynamic user (61184–65519)", uids)
	}
	modes := h.Exec(t, "stat", "-c", "%a %n", "/var/lib/pushdeploy", "/var/lib/pushdeploy/apps", "/var/lib/pushdeploy/apps/web",
		"/var/lib/pushdeploy/apps/web/releases", "/var/lib/pushdeploy/apps/web/releases/"+d.SHA, "/var/lib/pushdeploy/apps/web/deploys",
		"/var/lib/pushdeploy/state.db", "/var/lib/pushdeploy/objects")
	t.Logf("modes in the host:\n%s", modes)
	for _, want := range []string{"711 /var/lib/pushdeploy\n", "711 /var/lib/pushdeploy/apps/web\n", "755 /var/lib/pushdeploy/apps/web/releases/" + d.SHA + "\n",
		"700 /var/lib/pushdeploy/apps/web/deploys\n", "600 /var/lib/pushdeploy/state.db\n", "700 /var/lib/pushdeploy/objects"} {
		if !strings.Contains(modes+"\n", want) {
			t.Errorf("modes: want %q", strings.TrimSpace(want))
		}
	}

	s.release("2", webJSON(`"http": "/health"`, ""))
	d, log := s.push("version 2")
	if d.Status != state.StatusSucceeded {
		t.Fatalf("version 2: %s (%s)", d.Status, d.Error)
	}
	if n := strings.Count(log, `"message":"batch healthy"`); n != 2 {
		t.Errorf("version 2: %d batches healthy in the deploy log, want 2 (one instance at a time)", n)
	}
	good := d.SHA
	for n := 1; n <= 2; n++ {
		if got := s.answers(sysPort + n - 1); got != "hello from version 2" {
			t.Errorf("instance %d after version 2: %q", n, got)
		}
	}

	s.release("3", webJSON(`"http": "/nope"`, ""))
	d, _ = s.push("version 3, sick")
	if d.Status != state.StatusFailed || !strings.Contains(d.Error, "previous units put back and healthy") {
		t.Fatalf("sick version 3: %s (%s), want failed and reverted", d.Status, d.Error)
	}
	for n := 1; n <= 2; n++ {
		if got := s.answers(sysPort + n - 1); got != "hello from version 2" {
			t.Errorf("instance %d after the sick version 3: %q, want version 2 back", n, got)
		}
	}
	if cur := h.Exec(t, "readlink", "/var/lib/pushdeploy/apps/web/current"); cur != "releases/"+good {
		t.Errorf("current: %s, want releases/%s", cur, good)
	}

	// A data_dir its services cannot reach fails the deploy before anything restarts,
	// saying why, instead of instances failing with status=200/CHDIR.
	h.Exec(t, "chmod", "0700", "/var/lib/pushdeploy")
	s.release("3b", webJSON(`"http": "/health"`, ""))
	d, _ = s.push("version 3b, data_dir not reachable")
	h.Exec(t, "chmod", "0711", "/var/lib/pushdeploy")
	if want := "/var/lib/pushdeploy is mode 0700, without o+x"; d.Status != state.StatusFailed || !strings.Contains(d.Error, want) {
		t.Errorf("version 3b: %s (%s), want failed with %q", d.Status, d.Error, want)
	}
	if got := s.answers(sysPort); got != "hello from version 2" {
		t.Errorf("instance 1 after version 3b: %q, want version 2 still serving", got)
	}

	// A command check that tries to act with more than the service's rights.
	const check = `id -u > "$STATE_DIRECTORY/uid"
for f in /var/lib/pushdeploy/evil /var/lib/pushdeploy/apps/web/evil /etc/evil "$PUSHDEPLOY_RELEASE_DIR/evil" /root/evil; do
	touch "$f" 2>/dev/null && echo "wrote $f" || echo "refused $f"
done > "$STATE_DIRECTORY/log"
for f in /var/lib/pushdeploy/state.db /etc/pushdeploy/web.secret; do
	cat "$f" >/dev/null 2>&1 && echo "read $f" || echo "refused $f"
done >> "$STATE_DIRECTORY/log"
{ ls /var/lib/pushdeploy/apps/web/deploys >/dev/null 2>&1 && echo "read deploys" || echo "refused deploys"; } >> "$STATE_DIRECTORY/log"`
	s.repo.Write("bin/check", "#!/bin/sh\n"+check+"\n", 0o755)
	s.release("4", webJSON(`"command": ["bin/check"]`, `, "state_dirs": ["proof"]`))
	d, _ = s.push("version 4, command check")
	if d.Status != state.StatusSucceeded {
		t.Fatalf("version 4 (command check): %s (%s)", d.Status, d.Error)
	}
	log = h.Exec(t, "cat", "/var/lib/pushdeploy-web-web/proof/log")
	t.Logf("what the check could do:\n%s", log)
	if strings.Contains(log, "wrote ") || strings.Contains(log, "read ") || strings.Count(log, "refused ") != 8 {
		t.Errorf("the check acted outside the service's rights:\n%s", log)
	}
	for _, p := range []string{"/var/lib/pushdeploy/evil", "/var/lib/pushdeploy/apps/web/evil", "/etc/evil", "/root/evil"} {
		if _, err := h.Run(t.Context(), "test", "-e", p); err == nil {
			t.Errorf("the check created %s", p)
		}
	}
	checkUID, err := strconv.Atoi(h.Exec(t, "cat", "/var/lib/pushdeploy-web-web/proof/uid"))
	if err != nil {
		t.Fatal(err)
	}
	if serviceUID := s.uidOf("pushdeploy-web-web@1.service"); checkUID == 0 || checkUID != serviceUID || !dynamicUID(checkUID) {
		t.Errorf("the check ran as uid %d, want the service's dynamic user %d", checkUID, serviceUID)
	}
	if failed := h.Exec(t, "systemctl", "list-units", "--state=failed", "--no-legend", "--plain"); failed != "" {
		t.Errorf("failed units left in the host:\n%s", failed)
	}
}
