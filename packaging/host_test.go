package packaging

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// The README's "Install on a host", as the operator runs it, then what it promises (#10
// items 4 and 7): pushes delivered over the host's TLS listener deploy the demo app as
// dynamic users, roll over in health-checked batches and revert a sick release; a reboot
// brings everything back on the same release without a deploy; a host that goes down in
// the middle of a rollout finishes or reverts it when it comes back.
func TestInstallOnAHost(t *testing.T) {
	blocks := readmeBlocks(t, "../README.md", "## Install on a host")
	deb, _ := buildDeb(t)
	repo, bare, root := demoRepo(t)
	v1 := demoRelease(t, repo, bare, "1", demoHealth)

	lab := testenv.StartLab(t, testenv.LabOptions{})
	start := time.Now()
	h := lab.Boot(t, "web-1")
	t.Logf("figure: lab host boot (warm rootfs cache) %v", time.Since(start).Round(time.Millisecond))
	ssh := lab.GitSSH(t, root)
	github, hooksCreated := fakeGitHub(t, lab)
	h.CopyIn(t, deb, "/root/"+filepath.Base(deb))
	h.WriteFile(t, "/root/github-token", []byte("lab-token\n"), 0o600)

	// What the README names and the lab has elsewhere.
	bridge := lab.BridgeIP.String()
	subst := strings.NewReplacer(
		"git@git.example.com", "root@"+bridge,
		"git.example.com", bridge,
		"sudo ", "",
		"pushdeploy hooks ensure", "pushdeploy hooks ensure --api-url "+github,
	)
	authorized := false
	for i, block := range blocks {
		script := subst.Replace(block)
		out, ok := try(t, h, "sh", "-e", "-c", "cd /root && "+script)
		t.Logf("README block %d:\n%s\n-> %s", i+1, script, out)
		if !ok {
			t.Fatalf("README block %d failed:\n%s\n%s\njournal:\n%s", i+1, script, out, journal(h, agentUnit))
		}
		// The git server's side: the deploy key the host made may read the repository.
		if pub, ok := try(t, h, "cat", "/etc/pushdeploy/web.deploy_key.pub"); ok && !authorized {
			ssh.Authorize(t, pub)
			authorized = true
		}
	}
	if n := hooksCreated.Load(); n != 1 {
		t.Errorf("hooks ensure created %d webhooks on the fake GitHub, want 1", n)
	}
	if got := current(t, h); got != v1 {
		t.Fatalf("after the README: current release %q, want %s (the deploy of deploy-production)", got, v1)
	}
	checkInstances(t, h, "1")

	deliver := webhookSender(t, lab, h)
	push := func(t *testing.T, sha string) state.Deploy { return waitDeploy(t, h, "web", deliver(t, sha), sha) }
	ok := t.Run("system scope", func(t *testing.T) {
		rssIdle := rss(t, h)
		v2 := demoRelease(t, repo, bare, "2", demoHealth)
		var peak string
		stop := sampleRSS(t, h, &peak)
		d := push(t, v2)
		stop()
		t.Logf("figure: agent RSS idle %s; during a deploy, highest sampled %s (after it: %s)", rssIdle, peak, rss(t, h))
		if d.Status != state.StatusSucceeded {
			t.Fatalf("deploy of v2 %s: %s: %s\n%s", d.ID, d.Status, d.Error, deployLog(t, h, "web", d.ID))
		}
		log := deployLog(t, h, "web", d.ID)
		for _, want := range []string{`"batch":1,"of":2`, `"batch":2,"of":2`} {
			if !strings.Contains(log, want) {
				t.Errorf("deploy log of v2 lacks %q:\n%s", want, log)
			}
		}
		checkInstances(t, h, "2")

		// Healthy never: /health answers 503 with a DB_URL that is not postgres://.
		v3 := demoRelease(t, repo, bare, "3", `"env": {"DB_URL": "mysql://db"}, `+demoSick)
		d = push(t, v3)
		if d.Status != state.StatusFailed {
			t.Errorf("sick deploy %s: %s, want failed", d.ID, d.Status)
		}
		t.Logf("sick deploy's error: %s", d.Error)
		for _, want := range []string{"status 503: DB_URL: want a postgres:// URL", "journal lines:", "Started pushdeploy-web-web@1.service", "put back and healthy"} {
			if !strings.Contains(d.Error, want) {
				t.Errorf("sick deploy's error lacks %q (the check's answer, the journal, the revert):\n%s", want, d.Error)
			}
		}
		if got := current(t, h); got != v2 {
			t.Errorf("after the sick deploy: current %s, want %s put back", got, v2)
		}
		if meta := run(t, h, "cat", "/var/lib/pushdeploy/apps/web/meta/"+v3+".json"); !strings.Contains(meta, `"bad"`) {
			t.Errorf("sick release not marked bad: %s", meta)
		}
		checkInstances(t, h, "2")
		checkSandbox(t, h)
	})
	if !ok {
		return
	}
	if !t.Run("reboot", func(t *testing.T) { checkReboot(t, h) }) {
		return
	}
	if !t.Run("down mid-rollout", func(t *testing.T) {
		checkCrashMidRollout(t, h, deliver, demoRelease(t, repo, bare, "4", demoSlow))
	}) {
		return
	}
	t.Run("watchdog", func(t *testing.T) { checkWatchdog(t, h) })
}

// readmeBlocks returns the ```sh blocks of the README's section that starts with heading,
// up to the next section.
func readmeBlocks(t *testing.T, readme, heading string) []string {
	t.Helper()
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s: no section %q", readme, heading)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)\n```sh\n(.*?)\n```\n").FindAllStringSubmatch(sec, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) < 5 {
		t.Fatalf("%s, %q: %d sh blocks, want the install steps", readme, heading, len(blocks))
	}
	return blocks
}

// The demo app's health checks: quick for the tests (a batch takes settle, 1 s, and 300
// ms healthy), sick (a deadline of 2 s), slow (each batch stays 3 s under watch).
const (
	demoHealth = `"health": {"http": "/health", "interval": "100ms", "min_healthy_time": "300ms"}`
	demoSick   = `"health": {"http": "/health", "interval": "100ms", "min_healthy_time": "300ms", "healthy_deadline": "2s"}`
	demoSlow   = `"health": {"http": "/health", "interval": "100ms", "min_healthy_time": "3s"}`
)

// demoRepo returns a work repository holding scripts/demo's hello program (static) and the
// bare acme/web.git under root it is pushed to.
func demoRepo(t *testing.T) (*testenv.Repo, *testenv.Bare, string) {
	t.Helper()
	repo := testenv.NewRepo(t)
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(repo.Dir(), "bin", "hello"), "../scripts/demo/hello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build hello: %v\n%s", err, out)
	}
	root := testenv.NewRoot(t)
	return repo, testenv.NewBare(t, root, "acme/web.git", true), root
}

// demoRelease commits version (VERSION, which hello answers) with a service.json of two
// instances on ports 8080 and 8081, rolled out one at a time, with extra (health and env
// fields), pushes it to deploy-production and returns its sha.
func demoRelease(t *testing.T, repo *testenv.Repo, bare *testenv.Bare, version, extra string) string {
	t.Helper()
	repo.Write("VERSION", version+"\n", 0o644)
	repo.Write("service.json", `{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": 8080,
  "rollout": {"max_parallel": 1}, `+extra+`}}}
`, 0o644)
	sha := repo.Commit("hello, version " + version)
	repo.Push(bare, "HEAD:refs/heads/deploy-production")
	return sha
}

// fakeGitHub serves, on the lab bridge, the part of GitHub Enterprise's API `hooks ensure`
// uses for acme/web, and returns its URL and the count of hooks created.
func fakeGitHub(t *testing.T, lab *testenv.Lab) (string, *atomic.Int64) {
	t.Helper()
	ln, err := lab.Listen("tcp", lab.BridgeIP.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	var created atomic.Int64
	var hooks atomic.Value
	hooks.Store([]any{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/api/v3/repos/acme/web/hooks" || r.Header.Get("Authorization") == "" {
			http.Error(w, `{"message": "Not Found"}`, http.StatusNotFound)
			return
		}
		switch r.Method {
		case http.MethodGet:
			json.NewEncoder(w).Encode(hooks.Load())
		case http.MethodPost:
			var hook map[string]any
			if json.NewDecoder(r.Body).Decode(&hook) != nil {
				http.Error(w, `{"message": "Problems parsing JSON"}`, http.StatusBadRequest)
				return
			}
			hook["id"] = created.Add(1)
			hooks.Store(append(hooks.Load().([]any), hook))
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(hook)
		default:
			http.Error(w, `{"message": "Not Found"}`, http.StatusNotFound)
		}
	})}
	go srv.Serve(ln) // returns once Close in the cleanup closed the listener
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), &created
}

// webhookSender returns a function that delivers a push of sha to the host's agent over
// its TLS listener, as GitHub would (trusting the certificate the README made, for
// web-1.example.com), and returns the id of the deploy queued.
func webhookSender(t *testing.T, lab *testenv.Lab, h *testenv.Host) func(t *testing.T, sha string) string {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(run(t, h, "cat", "/etc/pushdeploy/tls/cert.pem"))) {
		t.Fatal("no certificate in the host's /etc/pushdeploy/tls/cert.pem")
	}
	client := lab.HTTPClient()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "web-1.example.com"}
	key := []byte(run(t, h, "cat", "/etc/pushdeploy/web.secret"))
	url := fmt.Sprintf("https://%s:5757/webhook/web", h.IP())
	return func(t *testing.T, sha string) string {
		t.Helper()
		return sendPush(t, client, url, key, "acme/web", sha)
	}
}

// current returns the sha the app web's current release is, or "".
func current(t *testing.T, h *testenv.Host) string {
	t.Helper()
	out, _ := try(t, h, "readlink", "/var/lib/pushdeploy/apps/web/current")
	return filepath.Base(out)
}

// journal returns the last lines of the host's journal for units, for a failure message.
func journal(h *testenv.Host, units ...string) string {
	args := []string{"journalctl", "--no-pager", "-n", "40"}
	for _, u := range units {
		args = append(args, "-u", u)
	}
	out, _ := h.Run(context.Background(), args...)
	return string(out)
}
