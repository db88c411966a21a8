package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// The secrets the audit gives the agent: distinctive, so that finding one anywhere is a
// leak and not a coincidence.
const (
	auditWebhookSecret = "whsecQ7xZ2mK9pL4vN8cR1"
	auditGitHubToken   = "ghpTokR5tY7uI9oP1aS3dF"
	auditEtcdPassword  = "etcdPwS6dF8gH0jK2lZ4xC"
	auditGitToken      = "gitTokD4gH6jK8lZ0xC2vB"
	auditSlackToken    = "slackTokX1cV3bN5mQ7wE9"
	auditNotifySecret  = "nfySecR9tY1uI3oP5aS7dF"
	auditUIToken       = "uiTokF2gH4jK6lZ8xC0vB2"
	auditDBPassword    = "dbPassZ1xC3vB5nM7qW9eR"
	auditDBPassword2   = "dbPassE4rT6yU8iO0pA2sD"
	auditDBPassword3   = "dbPassG7hJ9kL1zX3cV5bN"
)

// configSecrets are the secrets the app's configuration holds: the environment file and
// the cached good configuration hold them by design.
var configSecrets = []string{"app config secret.db_url password", "app config secret.db_url password (changed)", "app config secret.db_url password (reverted)"}

// TestE2E_secretsAudit gives a real agent a secret of every kind it handles — the webhook
// secret, a GitHub token (deployment statuses to a GitHub stand-in), the etcd password (etcd
// with auth), an app configuration secret (secret.db_url in etcd, changed twice), a git
// remote credential (basic auth in the remote URL, served by git http-backend), a Slack
// webhook URL's token, a notification webhook's HMAC secret, the status page's token and the
// webhook listener's TLS key — and runs a session: a deploy that succeeds, one whose service
// fails at start (printing its database URL, as apps do) and is reverted, a configuration
// change rolled out and one reverted as unhealthy, a redelivery, bad signatures and other
// refused deliveries, and every command that shows state. Then it scans everything the
// agent wrote or served for any of those secrets in any plausible encoding: its log, every
// file under data_dir (state.db's raw bytes included), the CLI's output, the admin API,
// the status page, /metrics, the webhook answers, GitHub's requests, the notifications and
// the unit files; and checks every mode in data_dir. The environment file and the cached
// good configuration hold the app's configuration secrets by design: only those, 0600 in
// a 0700 directory.
func TestE2E_secretsAudit(t *testing.T) {
	began := time.Now()
	sd := testenv.StartSystemd(t)
	e := &e2e{t: t, bin: binary(t), dir: t.TempDir(), repo: testenv.NewRepo(t)}
	root := testenv.NewRoot(t)
	e.bare = testenv.NewBare(t, root, "acme/web.git", true)
	etcd := testenv.StartEtcdAuth(t, "pushdeploy", auditEtcdPassword, "/pushdeploy/")
	gitURL := testenv.GitHTTPToken(t, root, auditGitToken)
	remote := strings.Replace(gitURL, "http://", "http://x-access-token:"+auditGitToken+"@", 1) + "acme/web.git"
	// App api's git server is down: its catch-up and a deploy of it fail, quoting its remote.
	deadRemote := fmt.Sprintf("http://x-access-token:%s@127.0.0.1:%d/acme/api.git", auditGitToken, freeTCPPort(t))

	secrets := newSecretSet()
	secrets.add("webhook secret", auditWebhookSecret)
	secrets.add("github token", auditGitHubToken)
	secrets.add("etcd password", auditEtcdPassword)
	secrets.add("git remote token", auditGitToken)
	secrets.addForm("git remote token", "basic auth", base64.StdEncoding.EncodeToString([]byte("x-access-token:"+auditGitToken)))
	secrets.add("slack webhook URL token", auditSlackToken)
	secrets.add("notification HMAC secret", auditNotifySecret)
	secrets.add("status page token", auditUIToken)
	secrets.add(configSecrets[0], auditDBPassword)
	secrets.add(configSecrets[1], auditDBPassword2)
	secrets.add(configSecrets[2], auditDBPassword3)

	github := &recorder{answer: failFirst(githubAnswer)} // a failed call is retried, and logged
	ghSrv := httptest.NewServer(github)
	t.Cleanup(ghSrv.Close)
	notified := &recorder{answer: failFirst(func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusOK) })}
	nSrv := httptest.NewServer(notified)
	t.Cleanup(nSrv.Close)

	write := func(name, content string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile := filepath.Join(e.dir, "cert.pem"), filepath.Join(e.dir, "key.pem")
	pool, keyForms := writeAuditCert(t, certFile, keyFile)
	for form, v := range keyForms {
		secrets.addForm("TLS private key", form, v)
	}
	data := filepath.Join(testenv.DataDirOutsideTmp(t), "data")
	// A deploy script that prints the database URL, as a migration tool may.
	migrate := filepath.Join(e.dir, "migrate.sh")
	if err := os.WriteFile(migrate, []byte("#!/bin/sh\nset -a\n. \"$PUSHDEPLOY_ENV_FILE\"\necho \"migrations: connecting to $DB_URL\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	port, uiPort, appPort := freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
tls: {cert_file: %s, key_file: %s}
data_dir: %s
environments: [production]
systemd: {scope: user, unit_dir: %s, bus: "%s", journal_dir: %s, settle: 300ms}
etcd:
  endpoints: [%s]
  username: pushdeploy
  password_file: %s
ui: {listen: "127.0.0.1:%d", token_file: %s}
notify:
  - {url: "%s/services/T0/B0/%s", type: slack, events: [started, succeeded, failed]}
  - {url: "%s/pushdeploy", secret_file: %s}
apps:
  web:
    repo: acme/web
    remote: %s
    secret_file: %s
    script: %s
    github: {token_file: %s, api_url: "%s", public_url: "https://deploy.example.com"}
    config: {debounce: 200ms}
  api:
    repo: acme/api
    remote: %s
    secret_file: %s
`, port, certFile, keyFile, data, sd.UnitDir, sd.BusAddress, filepath.Join(sd.JournalDir, "journal"),
		etcd.Endpoints[0], write("etcd.password", auditEtcdPassword+"\n"),
		uiPort, write("ui.token", auditUIToken+"\n"),
		nSrv.URL, auditSlackToken, nSrv.URL, write("notify.secret", auditNotifySecret+"\n"),
		remote, write("web.secret", auditWebhookSecret+"\n"), migrate, write("github.token", auditGitHubToken+"\n"), ghSrv.URL,
		deadRemote, filepath.Join(e.dir, "web.secret"))
	e.config = write("agent.yaml", cfg)
	hook := fmt.Sprintf("#!/bin/sh\nSSL_CERT_FILE=%s exec %s hooks post-receive --repo acme/web --secret-file %s --url https://127.0.0.1:%d/webhook/web\n",
		certFile, e.bin, filepath.Join(e.dir, "web.secret"), port)
	if err := os.WriteFile(filepath.Join(e.bare.Path(), "hooks", "post-receive"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.kill(syscall.SIGKILL) })

	var outputs []struct{ where, text string } // everything the CLI printed
	cli := func(args ...string) string {
		t.Helper()
		out := e.cli(args...)
		outputs = append(outputs, struct{ where, text string }{"pushdeploy " + strings.Join(args, " "), out})
		return out
	}
	dbURL := func(pw string) string { return "secret.db_url=postgres://app:" + pw + "@127.0.0.1:5432/app" }
	cli("env", "set", "web/production", dbURL(auditDBPassword), "greeting=hello")
	e.start() // returns at the first listener logged: the status page's
	e.port = strconv.Itoa(port)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
	base := "https://127.0.0.1:" + e.port
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := client.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the webhook listener does not answer: %v; agent log:\n%s", err, e.agentLog())
		}
	}

	// v1: healthy.
	e.repo.Write("bin/hello", testenv.HelloBinary(t), 0o755)
	e.repo.Write("bin/crash", "#!/bin/sh\necho \"fatal: cannot log in to $DB_URL\" >&2\nexit 1\n", 0o755)
	e.repo.Write("VERSION", "1\n", 0o644)
	service := func(cmd string) string {
		return fmt.Sprintf(`{"services": {"web": {"command": [%q], "port": %d, "health": {"http": "/health", "interval": "100ms", "min_healthy_time": "300ms", "healthy_deadline": "3s"}}}}`, cmd, appPort)
	}
	e.repo.Write("service.json", service("bin/hello"), 0o644)
	v1 := e.repo.Commit("one")
	push := func() {
		out := e.repo.Git("push", e.bare.Path(), "main:deploy-production")
		outputs = append(outputs, struct{ where, text string }{"git push (the post-receive hook)", out})
	}
	push()
	if d := e.waitFor(v1); d.Status != "succeeded" {
		t.Fatalf("v1: got %s (%s), want succeeded; agent log:\n%s", d.Status, d.Error, e.agentLog())
	}

	t.Logf("%v: v1 deployed", time.Since(began).Round(time.Millisecond))
	// Deliveries the agent refuses or has seen.
	payload, err := hooks.PushPayload(hooks.PushInput{Repo: "acme/web", Ref: "refs/heads/other", Before: strings.Repeat("0", 40), After: v1, Pusher: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	var answers []string
	deliver := func(path, event, delivery string, body []byte, sig map[string]string, want int) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", delivery)
		for k, v := range sig {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("deliver: %v", err)
		}
		var b bytes.Buffer
		resp.Header.Write(&b)
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		answers = append(answers, fmt.Sprintf("POST %s %s -> %d %s", path, delivery, resp.StatusCode, b.String()))
		if resp.StatusCode != want {
			t.Errorf("POST %s (%s): got %d, want %d: %s", path, delivery, resp.StatusCode, want, b.String())
		}
	}
	right := map[string]string{"X-Hub-Signature-256": hooks.Sign([]byte(auditWebhookSecret), payload)}
	deliver("/webhook/web", "push", "d-once", payload, right, http.StatusOK)
	deliver("/webhook/web", "push", "d-once", payload, right, http.StatusOK) // a redelivery: duplicate
	deliver("/webhook/web", "push", "d-wrong", payload, map[string]string{"X-Hub-Signature-256": hooks.Sign([]byte("not-the-secret"), payload)}, http.StatusUnauthorized)
	deliver("/webhook/web", "push", "d-none", payload, nil, http.StatusUnauthorized)
	deliver("/webhook/web", "push", "d-sha1", payload, map[string]string{"X-Hub-Signature": "sha1=" + strings.Repeat("0", 40)}, http.StatusUnauthorized)
	deliver("/webhook/nope", "push", "d-app", payload, right, http.StatusNotFound)
	bad := []byte(`{"ref": "refs/heads/deploy-production", "after": 42}`)
	deliver("/webhook/web", "push", "d-json", bad, map[string]string{"X-Hub-Signature-256": hooks.Sign([]byte(auditWebhookSecret), bad)}, http.StatusBadRequest)
	if !strings.Contains(answers[1], `"duplicate"`) {
		t.Errorf("the redelivery: got %s, want duplicate", answers[1])
	}

	// v2: its service fails at start, printing its database URL; the rollout is reverted.
	e.repo.Write("VERSION", "2\n", 0o644)
	e.repo.Write("service.json", service("bin/crash"), 0o644)
	v2 := e.repo.Commit("two")
	push()
	failed := e.waitFor(v2)
	if failed.Status != "failed" {
		t.Fatalf("v2: got %s, want failed", failed.Status)
	}
	if !strings.Contains(failed.Error, "fatal: cannot log in to <redacted>") {
		t.Errorf("v2's error does not quote the service's journal, masked, which this test needs: %q", failed.Error)
	}
	t.Logf("v2 failed: %s", failed.Error)

	// A configuration change rolled out, and one reverted as unhealthy (hello wants a
	// postgres:// URL).
	before := len(waitConfig(t, e, 0)) // the agent may have rolled out the first one at start
	cli("env", "set", "web/production", dbURL(auditDBPassword2))
	waitConfig(t, e, before+1)
	cli("env", "set", "web/production", "secret.db_url=mysql://app:"+auditDBPassword3+"@127.0.0.1:3306/app")
	records := waitConfig(t, e, before+2)[before:]
	if records[0].Status != "succeeded" || records[1].Status != "failed" {
		t.Errorf("configuration changes: got %+v, want succeeded then failed", records)
	}

	t.Logf("%v: configuration changes done", time.Since(began).Round(time.Millisecond))
	out := e.cliFails("deploy", "api")
	outputs = append(outputs, struct{ where, text string }{"pushdeploy deploy api (its git server down)", out})
	if !strings.Contains(out+e.agentLog(), "x-access-token@127.0.0.1") {
		t.Errorf("neither deploy api nor the agent's log quotes api's remote, which this test needs: %s", out)
	}
	t.Logf("deploy api: %s", strings.TrimSpace(out))
	if got := cli("restart", "web"); !strings.Contains(got, "restart succeeded") {
		t.Errorf("restart: %s", got)
	}
	t.Logf("%v: restart done", time.Since(began).Round(time.Millisecond))

	// Every command that shows state, and every answer the agent serves.
	var hist []deployJSON
	if err := json.Unmarshal([]byte(cli("history", "web", "--json")), &hist); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"history", "web"}, {"logs", "web"}, {"logs", "web", "--json"},
		{"releases", "list", "web"}, {"config", "check"}, {"env", "get", "web"}, {"env", "get", "web", "--env"},
		{"env", "get", "web", "secret.db_url"}, {"env", "export", "web"}, {"env", "dump"}} {
		cli(args...)
	}
	if got := cli("env", "get", "web", "secret.db_url"); !strings.Contains(got, "hidden") {
		t.Errorf("env get secret.db_url: got %q, want it masked", got)
	}
	served := map[string][]byte{}
	adm := unixClient(filepath.Join(data, "run", "admin.sock"))
	ui := &http.Client{Timeout: 30 * time.Second}
	bearer := map[string]string{"Authorization": "Bearer " + auditUIToken}
	get := func(c *http.Client, url string, h map[string]string) {
		code, body := fetch(t, c, url, h)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d", url, code)
		}
		served["GET "+url] = body
	}
	get(adm, "http://agent/v1/status", nil)
	get(adm, "http://agent/v1/apps/web/history", nil)
	get(ui, fmt.Sprintf("http://127.0.0.1:%d/", uiPort), bearer)
	get(ui, fmt.Sprintf("http://127.0.0.1:%d/apps/web", uiPort), bearer)
	first := ""
	for _, d := range hist {
		if d.SHA == v1 {
			first = d.ID
		}
	}
	if got := cli("logs", "web", first); !strings.Contains(got, "migrations: connecting to <redacted>") {
		t.Errorf("v1's deploy log does not show the script's output, masked, which this test needs:\n%s", got)
	}
	for _, d := range hist {
		cli("history", "web", d.ID)
		cli("logs", "web", d.ID, "--json")
		get(adm, "http://agent/v1/apps/web/deploys/"+d.ID, nil)
		get(adm, "http://agent/v1/apps/web/deploys/"+d.ID+"/log", nil)
		get(ui, fmt.Sprintf("http://127.0.0.1:%d/deploys/%s", uiPort, d.ID), bearer)
		get(ui, fmt.Sprintf("http://127.0.0.1:%d/deploys/%s/events", uiPort, d.ID), bearer)
	}
	for _, u := range []string{"http://agent/v1/apps/nope/history", "http://agent/v1/apps/web/deploys/nope",
		"http://agent/v1/apps/web/deploys/nope/log"} {
		_, served["GET "+u] = fetch(t, adm, u, nil)
	}
	for _, p := range []string{"/deploys/nope", "/apps/nope", "/nope"} {
		_, served["GET ui "+p] = fetch(t, ui, fmt.Sprintf("http://127.0.0.1:%d%s", uiPort, p), bearer)
	}
	_, served["GET /webhook/web"] = fetch(t, client, base+"/webhook/web", nil)
	get(client, base+"/metrics", nil)
	get(client, base+"/healthz", nil)
	if code, body := fetch(t, ui, fmt.Sprintf("http://127.0.0.1:%d/", uiPort), nil); code != http.StatusUnauthorized {
		t.Errorf("status page without the token: %d, want 401", code)
	} else {
		served["GET / without a token"] = body
	}
	t.Logf("%v: commands and answers done", time.Since(began).Round(time.Millisecond))
	e.kill(syscall.SIGTERM) // a stopping agent sends what it queued: every notification is in
	t.Logf("%v: agent stopped", time.Since(began).Round(time.Millisecond))

	// The scan.
	var n scanned
	look := func(s *secretSet, where string, b []byte) { n.add(where, len(b)); s.scan(t, where, b) }
	look(secrets, "the agent's log (stderr)", []byte(e.agentLog()))
	for _, o := range outputs {
		look(secrets, o.where, []byte(o.text))
	}
	for where, b := range served {
		look(secrets, where, b)
	}
	look(secrets, "webhook answers", []byte(strings.Join(answers, "\n")))
	layout := datadir.Layout{Root: data}
	byDesign := map[string]bool{layout.EnvFile("web"): true, layout.GoodConfig("web"): true}
	for _, rel := range filesUnder(t, data) {
		p := filepath.Join(data, rel)
		s := secrets
		if byDesign[p] {
			s = secrets.without(configSecrets...)
		}
		look(s, "data_dir/"+rel, readOrEmpty(t, p))
	}
	env := readOrEmpty(t, layout.EnvFile("web"))
	if !bytes.Contains(env, []byte(auditDBPassword2)) || len(secrets.find(env)) == 0 {
		t.Errorf("the environment file does not hold the rolled-out secret, or the scan cannot see it:\n%s", env)
	}
	units := 0
	for _, rel := range filesUnder(t, sd.UnitDir) {
		if !strings.HasPrefix(rel, "pushdeploy-") {
			continue
		}
		b := readOrEmpty(t, filepath.Join(sd.UnitDir, rel))
		look(secrets, "unit "+rel, b)
		if strings.HasSuffix(rel, "@.service") {
			units++
			if !bytes.Contains(b, []byte("EnvironmentFile="+layout.EnvFile("web"))) {
				t.Errorf("unit %s: no EnvironmentFile=%s:\n%s", rel, layout.EnvFile("web"), b)
			}
		}
	}
	if units == 0 {
		t.Errorf("no unit template in %s", sd.UnitDir)
	}
	for _, r := range github.all() {
		if got := r.Header.Get("Authorization"); got != "Bearer "+auditGitHubToken {
			t.Errorf("GitHub %s %s: Authorization %q", r.Method, r.Path, got)
		}
		r.Header.Del("Authorization") // where the token belongs
		look(secrets, "GitHub request "+r.Method+" "+r.Path, append(headerBytes(r.Header), r.Body...))
	}
	for _, r := range notified.all() {
		look(secrets, "notification POST "+strings.Replace(r.Path, auditSlackToken, "<token>", 1), append(headerBytes(r.Header), r.Body...))
	}
	if len(github.all()) < 6 || len(notified.all()) < 4 {
		t.Errorf("GitHub got %d requests and the notification targets %d: too few for the session", len(github.all()), len(notified.all()))
	}

	// Modes, as README's "On disk" documents them.
	checked := checkModes(t, data)
	for _, p := range []string{layout.Config("web"), filepath.Dir(layout.DeployLog("web", "x"))} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want a directory 0700", p, fi.Mode(), err)
		}
	}
	for _, p := range []string{layout.EnvFile("web"), layout.GoodConfig("web"), layout.BadConfig("web"), layout.StateDB(), layout.Units("web")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want a file 0600", p, fi, err)
		}
	}
	t.Logf("scanned %d places (%d bytes) for %d secrets in %d forms; checked the modes of %d paths",
		len(n.places), n.bytes, len(secrets.kinds), len(secrets.forms), checked)
}
