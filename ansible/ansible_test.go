package ansible

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/githttp"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// What the lab's hosts are given.
const (
	hookSecret   = "lab-webhook-secret"
	githubToken  = "ghp_lab_hooks_token"
	notifySecret = "lab-notify-secret"
	uiToken      = "lab-ui-token"
	appPort      = 3000 // the demo app's first instance (service.json)
	haproxyBind  = 8080 // h1's haproxy frontend, from the role's haproxy piece
)

// TestSite runs site.yml in check mode on two fresh lab hosts (nothing changes), provisions
// them from a package built by the repository's own `make deb`, runs it again (nothing
// changes), checks that --check --diff reports a change without making it, deploys the demo app on both with a git push, and
// checks the GitHub stand-in holds exactly one webhook per host. Then wrong variables fail
// the play, naming the variable, before anything changes.
func TestSite(t *testing.T) {
	needAnsible(t)
	deb := testenv.BuildDeb(t, "../packaging/build-deb.sh")
	lab := testenv.StartLab(t, testenv.LabOptions{}) // haproxy and procps are in testenv.LabBasePackages
	hosts := []*testenv.Host{lab.Boot(t, "h1"), lab.Boot(t, "h2")}

	root := testenv.NewRoot(t)
	bare := testenv.NewBare(t, root, "acme/hello.git", true)
	remote := lab.GitHTTP(t, root) + "acme/hello.git"
	ln, err := lab.Listen("tcp", lab.BridgeIP.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	gh := newFakeGitHub(t, ln, githubToken, "acme/hello", hookSecret)
	if ln, err = lab.Listen("tcp", lab.BridgeIP.String()+":0"); err != nil {
		t.Fatal(err)
	}
	target := newNotifyTarget(t, ln, notifySecret)

	inv := inventory(hosts, labSetup{deb: deb, remote: remote, githubAPI: gh.URL(), notifyURL: target.URL()})
	r := newRunner(t)
	names := []string{hosts[0].Name, hosts[1].Name}

	// --check --diff on fresh hosts: says what it would do, does nothing.
	dry := r.run(inv, "--check", "--diff")
	dry.mustSucceed(t, "check mode on fresh hosts", names...)
	t.Logf("check mode on fresh hosts: %v; %s", dry.elapsed.Round(100*time.Millisecond), dry.recapLines())
	for _, h := range hosts {
		if dry.recap[h.Name].changed == 0 {
			t.Errorf("check mode on fresh %s: changed=0, want the changes a real run makes", h.Name)
		}
		if out, err := h.Run(t.Context(), "sh", "-c", "dpkg-query -W pushdeploy || ls -d /etc/pushdeploy"); err == nil {
			t.Errorf("check mode changed %s: %s", h.Name, out)
		}
	}

	first := r.run(inv)
	first.mustSucceed(t, "first run", names...)
	t.Logf("first provisioning run (2 hosts in parallel): %v; %s", first.elapsed.Round(100*time.Millisecond), first.recapLines())
	for _, h := range hosts {
		if got := h.Exec(t, "systemctl", "is-active", "pushdeploy.service"); got != "active" {
			t.Errorf("%s: pushdeploy.service %s, want active", h.Name, got)
		}
		if got := h.Exec(t, "stat", "-c", "%a %U", "/etc/pushdeploy/hello.secret"); got != "600 root" {
			t.Errorf("%s: hello.secret mode and owner %q, want \"600 root\"", h.Name, got)
		}
	}
	secrets := []string{hookSecret, githubToken, notifySecret, uiToken, target.URL()}
	noSecrets(t, "check mode", dry.out, secrets)
	noSecrets(t, "first run", first.out, secrets)
	pids := mainPIDs(t, hosts)

	second := r.run(inv)
	second.mustSucceed(t, "second run", names...)
	t.Logf("idempotent second run: %v; %s", second.elapsed.Round(100*time.Millisecond), second.recapLines())
	for _, n := range names {
		if c := second.recap[n].changed; c != 0 {
			t.Errorf("second run: %s changed=%d, want 0\n%s", n, c, second.out)
		}
	}
	if got := mainPIDs(t, hosts); !slices.Equal(got, pids) {
		t.Errorf("second run restarted the agent: MainPIDs %v, then %v", pids, got)
	}
	noSecrets(t, "second run", second.out, secrets)

	t.Run("check diff", func(t *testing.T) { checkDiff(t, r, inv, hosts[1]) }) // h1 shows no agent.yaml diff: its notify URL is a secret

	// Both runs asked GitHub for the hooks; each host's was created once, never edited.
	want := []string{webhookURL(hosts[0]), webhookURL(hosts[1])}
	if got := gh.hookURLs(); !slices.Equal(got, want) {
		t.Errorf("GitHub hooks after two runs: %v, want one per host %v", got, want)
	}
	if creates, edits := gh.counts(); creates != 2 || edits != 0 {
		t.Errorf("GitHub saw %d creates and %d edits, want 2 and 0", creates, edits)
	}

	t.Run("push deploys", func(t *testing.T) {
		pushDeploys(t, lab, hosts, bare, deb)
		// h1's notification target, from the role's pushdeploy_notify, hears of it, signed.
		var events []string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			events = events[:0]
			for _, ev := range target.received() {
				events = append(events, ev.Event+" "+ev.App+" on "+ev.Host)
			}
			if slices.Contains(events, "succeeded hello on h1") {
				break
			}
		}
		if !slices.Contains(events, "succeeded hello on h1") {
			t.Errorf("notifications received: %q, want \"succeeded hello on h1\"", events)
		}
	})
	t.Run("wrong variables", func(t *testing.T) { wrongVariables(t, r, inv, hosts[0]) })
}

// labSetup is what the lab serves the hosts: the package, the git remote, GitHub's API
// and a notification target.
type labSetup struct{ deb, remote, githubAPI, notifyURL string }

// inventory is the test's inventory: what a user writes (inventory.example.yml), with the
// lab's hosts reached through nsenter; h1 gets the haproxy piece and a notification target,
// h2 the status page.
func inventory(hosts []*testenv.Host, l labSetup) map[string]any {
	hostVars := map[string]any{}
	for _, h := range hosts {
		app := map[string]any{"name": "hello", "repo": "acme/hello", "remote": l.remote, "secret": hookSecret}
		vars := map[string]any{
			"ansible_connection":      "community.docker.nsenter",
			"ansible_nsenter_pid":     h.Leader(),
			"pushdeploy_public_url":   fmt.Sprintf("http://%s:5757", h.IP()),
			"pushdeploy_apps":         []any{app},
			"pushdeploy_systemd":      map[string]any{"settle": "500ms"},
			"pushdeploy_package_file": l.deb,
		}
		switch h.Name {
		case "h1":
			app["haproxy"] = map[string]any{"port": appPort, "instances": 2, "check": "/health", "bind": fmt.Sprintf(":%d", haproxyBind)}
			vars["pushdeploy_notify"] = []any{map[string]any{"url": l.notifyURL, "secret": notifySecret, "events": []string{"succeeded", "failed"}}}
		case "h2":
			vars["pushdeploy_ui"] = map[string]any{"listen": "127.0.0.1:5758", "token": uiToken}
		}
		hostVars[h.Name] = vars
	}
	return map[string]any{"pushdeploy": map[string]any{
		"hosts": hostVars,
		"vars": map[string]any{
			"pushdeploy_github_token":    githubToken,
			"pushdeploy_github_api_url":  l.githubAPI,
			"pushdeploy_haproxy_install": false, // in the rootfs: the hosts have no network
		},
	}}
}

// noSecrets fails the test if a play's output shows one of secrets.
func noSecrets(t *testing.T, what, out string, secrets []string) {
	t.Helper()
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Errorf("%s: the play's output shows the secret %q:\n%s", what, secret, out)
		}
	}
}

// withApp returns a copy of inv where host's app is changed by edit.
func withApp(inv map[string]any, host string, edit func(app map[string]any)) map[string]any {
	group := maps.Clone(inv["pushdeploy"].(map[string]any))
	hostVars := maps.Clone(group["hosts"].(map[string]any))
	vars := maps.Clone(hostVars[host].(map[string]any))
	app := maps.Clone(vars["pushdeploy_apps"].([]any)[0].(map[string]any))
	edit(app)
	vars["pushdeploy_apps"] = []any{app}
	hostVars[host] = vars
	group["hosts"] = hostVars
	return map[string]any{"pushdeploy": group}
}

func webhookURL(h *testenv.Host) string { return fmt.Sprintf("http://%s:5757/webhook/hello", h.IP()) }

// mainPIDs returns the agent's main pid on each host.
func mainPIDs(t *testing.T, hosts []*testenv.Host) []string {
	t.Helper()
	var pids []string
	for _, h := range hosts {
		pids = append(pids, h.Exec(t, "systemctl", "show", "-p", "MainPID", "--value", "pushdeploy.service"))
	}
	return pids
}

// checkDiff: --check --diff with a changed variable shows the change in agent.yaml and
// leaves the host as it was.
func checkDiff(t *testing.T, r *runner, inv map[string]any, h *testenv.Host) {
	before := h.Exec(t, "cat", "/etc/pushdeploy/agent.yaml")
	pid := mainPIDs(t, []*testenv.Host{h})
	p := r.run(withApp(inv, h.Name, func(app map[string]any) { app["keep_releases"] = 7 }), "--check", "--diff", "--limit", h.Name)
	p.mustSucceed(t, "check mode", h.Name)
	if p.recap[h.Name].changed == 0 || !strings.Contains(p.out, "+    keep_releases: 7") {
		t.Errorf("--check --diff: changed=%d, want the agent.yaml change shown (+    keep_releases: 7):\n%s", p.recap[h.Name].changed, p.out)
	}
	if after := h.Exec(t, "cat", "/etc/pushdeploy/agent.yaml"); after != before {
		t.Errorf("--check changed agent.yaml:\n%s\nwas:\n%s", after, before)
	}
	if got := mainPIDs(t, []*testenv.Host{h}); !slices.Equal(got, pid) {
		t.Errorf("--check restarted the agent: MainPID %v, then %v", pid, got)
	}
}

// wrongVariables: a missing secret and an ssh remote without pinned host keys fail the
// play with a message naming the variable, and change nothing.
func wrongVariables(t *testing.T, r *runner, inv map[string]any, h *testenv.Host) {
	before := h.Exec(t, "cat", "/etc/pushdeploy/agent.yaml")
	tests := []struct {
		name string
		edit func(app map[string]any)
		want string
	}{
		{"missing secret", func(app map[string]any) { delete(app, "secret") },
			"missing required arguments: secret found in pushdeploy_apps"},
		{"ssh remote without known_hosts", func(app map[string]any) {
			app["remote"], app["ssh_key"] = "git@10.77.0.1:acme/hello.git", "not a real key"
		}, "pushdeploy_apps[hello].known_hosts: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := r.run(withApp(inv, h.Name, tt.edit), "--limit", h.Name)
			if p.err == nil || p.recap[h.Name].failed != 1 || !strings.Contains(p.out, tt.want) {
				t.Errorf("got %v, recap %+v; want a failed play saying %q:\n%s", p.err, p.recap[h.Name], tt.want, p.out)
			}
			if p.recap[h.Name].changed != 0 {
				t.Errorf("changed=%d before failing, want 0", p.recap[h.Name].changed)
			}
		})
	}
	if after := h.Exec(t, "cat", "/etc/pushdeploy/agent.yaml"); after != before {
		t.Errorf("a failed play changed agent.yaml:\n%s", after)
	}
}

// pushDeploys pushes the demo app to deploy-production from inside the lab (the bare
// repository's post-receive hook, the package's own pushdeploy, sends the signed webhooks
// to both hosts) and waits until each host serves it; h1 also through its haproxy.
func pushDeploys(t *testing.T, lab *testenv.Lab, hosts []*testenv.Host, bare *testenv.Bare, deb string) {
	bin := extractBinary(t, deb)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(hookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hook := fmt.Sprintf("#!/bin/sh\nexec %s hooks post-receive --repo acme/hello --secret-file %s --url %s --url %s\n",
		bin, secretFile, webhookURL(hosts[0]), webhookURL(hosts[1]))
	if err := os.WriteFile(filepath.Join(bare.Path(), "hooks", "post-receive"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}

	repo := testenv.NewRepo(t)
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(repo.Dir(), "bin", "hello"), "../scripts/demo/hello")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the demo app: %v\n%s", err, out)
	}
	repo.Write("VERSION", "1\n", 0o644)
	repo.Write("service.json", fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": %d,
  "health": {"http": "/health", "interval": "200ms", "min_healthy_time": "500ms", "healthy_deadline": "20s"}}}}`, appPort), 0o644)
	repo.Commit("hello, version 1")

	push := lab.Command(t.Context(), "git", "-C", repo.Dir(), "push", bare.Path(), "main:deploy-production")
	push.Env = append(push.Env, githttp.Env...)
	out, err := push.CombinedOutput()
	if err != nil || strings.Count(string(out), "queued as deploy") != 2 {
		t.Fatalf("git push: %v, want both hosts to queue a deploy:\n%s", err, out)
	}

	for _, h := range hosts {
		got := waitServed(t, h, fmt.Sprintf("http://127.0.0.1:%d/", appPort))
		if want := "hello from version 1"; got != want {
			t.Errorf("%s serves %q, want %q", h.Name, got, want)
		}
	}
	url := fmt.Sprintf("http://%s:%d/", hosts[0].IP(), haproxyBind)
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if resp, err := lab.HTTPClient().Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got = strings.TrimSpace(string(b)); resp.StatusCode == 200 {
				break
			}
		}
	}
	if want := "hello from version 1"; got != want {
		t.Errorf("GET %s (h1's haproxy): %q, want %q\n%s", url, got, want, hosts[0].Exec(t, "cat", "/etc/haproxy/haproxy.cfg"))
	}
}

// waitServed waits until h's newest deploy of hello ended, fails the test (with the
// agent's journal) unless it succeeded, and returns what url answers from inside h.
func waitServed(t *testing.T, h *testenv.Host, url string) string {
	t.Helper()
	var last string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		out, err := h.Run(t.Context(), "pushdeploy", "history", "hello", "--json")
		var hist []struct{ ID, Status, Error string }
		if err == nil && json.Unmarshal(out, &hist) == nil && len(hist) > 0 {
			d := hist[0]
			last = d.ID + " " + d.Status
			if d.Status == "succeeded" {
				break
			}
			if d.Status == "failed" || d.Status == "stale" || d.Status == "superseded" {
				journal, _ := h.Run(t.Context(), "journalctl", "-u", "pushdeploy", "--no-pager", "-n", "30")
				t.Fatalf("%s: deploy %s %s: %s\nagent journal:\n%s", h.Name, d.ID, d.Status, d.Error, journal)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no deploy of hello succeeded within 90s (last: %q, %v)", h.Name, last, err)
		}
	}
	const get = "import sys, urllib.request\nprint(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())"
	return h.Exec(t, "python3", "-c", get, url)
}

// extractBinary returns the pushdeploy binary the package holds.
func extractBinary(t *testing.T, deb string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	return filepath.Join(dir, "usr", "bin", "pushdeploy")
}
