package packaging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

const (
	agentUnit = "pushdeploy.service"
	appUnit   = "pushdeploy-demo-web@1.service"
	secret    = "lab-secret"
)

// maxExposure bounds `systemd-analyze security pushdeploy.service`: a right added to the
// unit without a reason fails here.
const maxExposure = 1.5

// The package's life on a booted minimal Debian 12 host without network: install (the
// agent is enabled, not started with the example config, and says why), configure and
// start (the sandboxed agent deploys a system-scope service run by a dynamic user),
// upgrade (the agent restarts, the app does not), remove (the agent stops, the app keeps
// running), purge (conffile and history go, the releases and the app stay), and purge
// with PUSHDEPLOY_PURGE_DATA=yes (the app and its data go too).
func TestDeb(t *testing.T) {
	deb, version := buildDeb(t)
	lab := testenv.StartLab(t, testenv.LabOptions{})
	h := lab.Boot(t, "deb")
	h.CopyIn(t, deb, "/root/pushdeploy.deb")

	ok := t.Run("install", func(t *testing.T) {
		out := run(t, h, "dpkg", "-i", "/root/pushdeploy.deb")
		if want := "not starting the agent: config /etc/pushdeploy/agent.yaml: apps: missing"; !strings.Contains(out, want) {
			t.Errorf("dpkg -i said:\n%s\nwant it to say %q", out, want)
		}
		if got := run(t, h, "dpkg-query", "-W", "-f", "${Status} ${Version}", "pushdeploy"); got != "install ok installed "+version {
			t.Errorf("dpkg-query: got %q, want installed %s", got, version)
		}
		if got, _ := try(t, h, "systemctl", "is-enabled", agentUnit); got != "enabled" {
			t.Errorf("after install: %s is %q, want enabled", agentUnit, got)
		}
		// Started by hand with the example config, it exits EX_CONFIG and is left failed:
		// a restart to come would leave it activating (auto-restart).
		if out, ok := try(t, h, "systemctl", "start", agentUnit); ok {
			t.Errorf("systemctl start with the example config succeeded:\n%s", out)
		}
		if got := prop(t, h, agentUnit, "ActiveState") + " " + prop(t, h, agentUnit, "ExecMainStatus"); got != "failed 78" {
			t.Errorf("agent started with the example config: state and exit status %q, want \"failed 78\"", got)
		}
		if got := run(t, h, "journalctl", "--no-pager", "-o", "cat", "-u", agentUnit); !strings.Contains(got, "apps: missing") {
			t.Errorf("journal of the agent started with the example config lacks the field:\n%s", got)
		}
		run(t, h, "systemctl", "reset-failed", agentUnit)

		stat := run(t, h, "stat", "-c", "%n %a %U:%G",
			"/usr/bin/pushdeploy", "/lib/systemd/system/pushdeploy.service", "/etc/pushdeploy",
			"/etc/pushdeploy/agent.yaml", "/var/lib/pushdeploy", "/usr/share/doc/pushdeploy/copyright",
			"/usr/share/doc/pushdeploy/changelog.Debian.gz", "/usr/share/doc/pushdeploy/README.Debian",
			"/usr/share/man/man1/pushdeploy.1.gz")
		want := `/usr/bin/pushdeploy 755 root:root
/lib/systemd/system/pushdeploy.service 644 root:root
/etc/pushdeploy 755 root:root
/etc/pushdeploy/agent.yaml 644 root:root
/var/lib/pushdeploy 711 root:root
/usr/share/doc/pushdeploy/copyright 644 root:root
/usr/share/doc/pushdeploy/changelog.Debian.gz 644 root:root
/usr/share/doc/pushdeploy/README.Debian 644 root:root
/usr/share/man/man1/pushdeploy.1.gz 644 root:root`
		if stat != want {
			t.Errorf("files:\n%s\nwant:\n%s", stat, want)
		}
		if got := run(t, h, "dpkg-query", "-W", "-f", "${Conffiles}", "pushdeploy"); !strings.Contains(got, "/etc/pushdeploy/agent.yaml ") {
			t.Errorf("conffiles: got %q, want /etc/pushdeploy/agent.yaml", got)
		}
		if got := run(t, h, "pushdeploy", "version"); !strings.HasPrefix(got, "pushdeploy "+version+" ") {
			t.Errorf("pushdeploy version: got %q, want the package's version %s", got, version)
		}
		if out := run(t, h, "systemd-analyze", "verify", agentUnit); out != "" {
			t.Errorf("systemd-analyze verify %s:\n%s", agentUnit, out)
		}
	})
	if !ok {
		return
	}

	var sha string
	ok = t.Run("configure and deploy", func(t *testing.T) {
		var repo *testenv.Repo
		var bare *testenv.Bare
		repo, bare, sha = configure(t, lab, h)
		run(t, h, "systemctl", "start", agentUnit)
		checkSandbox(t, h)
		checkMetrics(t, lab, h)
		if d := deploy(t, lab, h, sha); d.Status != state.StatusSucceeded {
			t.Fatalf("deploy %s: %s: %s\nlog:\n%s", d.ID, d.Status, d.Error, deployLog(t, h, d.ID))
		}
		uid := regexp.MustCompile(`(?m)^Uid:\t(\d+)`).FindStringSubmatch(run(t, h, "cat", "/proc/"+prop(t, h, appUnit, "MainPID")+"/status"))
		if n, _ := strconv.Atoi(uid[1]); n < 61184 || n > 65519 {
			t.Errorf("%s runs as uid %s, want a dynamic user (61184–65519)", appUnit, uid[1])
		}
		checkAppRuns(t, lab, h)

		// A release whose service dies at once: the deploy fails quoting the service's
		// journal, which the sandboxed agent reads, and the good release serves again.
		repo.Write("service.json", `{"services": {"web": {"command": ["sh", "-c", "echo sick release >&2; exit 3"]}}}`, 0o644)
		sick := repo.Commit("sick")
		repo.Push(bare, "HEAD:refs/heads/deploy-production")
		d := deploy(t, lab, h, sick)
		if d.Status != state.StatusFailed || !strings.Contains(d.Error, "sick release") {
			t.Errorf("sick deploy %s: %s: %q, want failed quoting the service's journal (\"sick release\")", d.ID, d.Status, d.Error)
		}
		checkAppRuns(t, lab, h)
	})
	if !ok {
		return
	}

	ok = t.Run("upgrade", func(t *testing.T) {
		next := version + "+1"
		if _, ok := try(t, h, "dpkg", "--compare-versions", next, "gt", version); !ok {
			t.Fatalf("%s does not sort after %s", next, version)
		}
		h.CopyIn(t, repackDeb(t, deb, next), "/root/pushdeploy-next.deb")
		agentPID, appPID := prop(t, h, agentUnit, "MainPID"), prop(t, h, appUnit, "MainPID")
		run(t, h, "dpkg", "-i", "/root/pushdeploy-next.deb")
		if got := prop(t, h, agentUnit, "ActiveState"); got != "active" {
			t.Fatalf("agent after the upgrade: %s, want active", got)
		}
		if got := prop(t, h, agentUnit, "MainPID"); got == agentPID {
			t.Errorf("agent's MainPID %s before and after the upgrade: not restarted", got)
		}
		if got := prop(t, h, appUnit, "MainPID"); got != appPID {
			t.Errorf("app's MainPID went from %s to %s: an agent upgrade restarted the app", appPID, got)
		}
		if got := run(t, h, "dpkg-query", "-W", "-f", "${Version}", "pushdeploy"); got != next {
			t.Errorf("version after the upgrade: %s, want %s", got, next)
		}
		// The administrator's agent.yaml stays (the package's did not change).
		if got := run(t, h, "pushdeploy", "config", "check"); !strings.Contains(got, "ok, apps: demo") {
			t.Errorf("pushdeploy config check after the upgrade: %s", got)
		}

		// An upgrade over a configuration broken since the agent started leaves it running.
		agentPID = prop(t, h, agentUnit, "MainPID")
		run(t, h, "sh", "-c", "cp /etc/pushdeploy/agent.yaml /root/agent.yaml && echo 'typo: 1' >>/etc/pushdeploy/agent.yaml")
		out := run(t, h, "dpkg", "-i", "/root/pushdeploy-next.deb")
		if want := "not restarting the agent, which goes on running the previous version: config /etc/pushdeploy/agent.yaml: parse:"; !strings.Contains(out, want) {
			t.Errorf("dpkg -i over a broken agent.yaml said:\n%s\nwant it to say %q", out, want)
		}
		if got := prop(t, h, agentUnit, "MainPID"); got != agentPID {
			t.Errorf("agent's MainPID went from %s to %s: restarted over a broken agent.yaml", agentPID, got)
		}
		run(t, h, "mv", "/root/agent.yaml", "/etc/pushdeploy/agent.yaml")
	})
	if !ok {
		return
	}

	ok = t.Run("remove", func(t *testing.T) {
		run(t, h, "dpkg", "-r", "pushdeploy")
		if got := prop(t, h, agentUnit, "ActiveState"); got != "inactive" {
			t.Errorf("agent after dpkg -r: %s, want inactive", got)
		}
		if exists(t, h, "/usr/bin/pushdeploy") || !exists(t, h, "/etc/pushdeploy/agent.yaml") {
			t.Error("after dpkg -r: want /usr/bin/pushdeploy gone and the conffile /etc/pushdeploy/agent.yaml kept")
		}
		checkAppRuns(t, lab, h)
	})
	if !ok {
		return
	}

	ok = t.Run("purge", func(t *testing.T) {
		run(t, h, "dpkg", "-P", "pushdeploy")
		for _, p := range []string{"/etc/pushdeploy/agent.yaml", "/var/lib/pushdeploy/state.db",
			"/var/lib/pushdeploy/run", "/var/lib/pushdeploy/apps/demo/deploys",
			"/etc/systemd/system/multi-user.target.wants/" + agentUnit} {
			if exists(t, h, p) {
				t.Errorf("after dpkg -P: %s is still there", p)
			}
		}
		for _, p := range []string{"/etc/pushdeploy/demo.secret", "/var/lib/pushdeploy/apps/demo/releases/" + sha,
			"/var/lib/pushdeploy/apps/demo/current", "/etc/systemd/system/pushdeploy-demo-web@.service"} {
			if !exists(t, h, p) {
				t.Errorf("after dpkg -P: %s is gone, want it kept", p)
			}
		}
		checkAppRuns(t, lab, h)
	})
	if !ok {
		return
	}

	t.Run("purge data", func(t *testing.T) {
		out := run(t, h, "dpkg", "-i", "/root/pushdeploy.deb")
		if got, _ := try(t, h, "systemctl", "is-enabled", agentUnit); got != "enabled" {
			t.Errorf("installed again after a purge: %s is %q, want enabled\n%s", agentUnit, got, out)
		}
		run(t, h, "env", "PUSHDEPLOY_PURGE_DATA=yes", "dpkg", "-P", "pushdeploy")
		if got := prop(t, h, appUnit, "ActiveState"); got != "inactive" {
			t.Errorf("app after a purge with PUSHDEPLOY_PURGE_DATA=yes: %s, want inactive", got)
		}
		left := run(t, h, "sh", "-c", "ls -d /var/lib/pushdeploy /etc/systemd/system/pushdeploy-* "+
			"/etc/systemd/system/*.wants/pushdeploy* 2>/dev/null || true")
		if left != "" {
			t.Errorf("after a purge with PUSHDEPLOY_PURGE_DATA=yes, still there:\n%s", left)
		}
	})
}

// configure writes an agent.yaml with app demo, whose remote is a repository served on
// the lab bridge holding a release with one python http.server instance; it returns the
// work repository, the served one and the commit on its deploy branch. Before the agent
// sends READY=1 (the notify branch), a drop-in makes its unit Type=exec.
func configure(t *testing.T, lab *testenv.Lab, h *testenv.Host) (repo *testenv.Repo, bare *testenv.Bare, sha string) {
	t.Helper()
	repo = testenv.NewRepo(t)
	repo.Write("hello.txt", "hello from the release\n", 0o644)
	repo.Write("service.json", `{"services": {"web": {
  "command": ["python3", "-m", "http.server", "--bind", "0.0.0.0", "8080"],
  "port": 8080,
  "health": {"http": "/hello.txt", "interval": "100ms", "min_healthy_time": "300ms"}
}}}
`, 0o644)
	sha = repo.Commit("demo")
	root := testenv.NewRoot(t)
	bare = testenv.NewBare(t, root, "acme/demo.git", true)
	repo.Push(bare, "HEAD:refs/heads/deploy-production")
	remote := lab.GitHTTP(t, root) + "acme/demo.git"

	h.WriteFile(t, "/etc/pushdeploy/demo.secret", []byte(secret+"\n"), 0o600)
	h.WriteFile(t, "/etc/pushdeploy/agent.yaml", fmt.Appendf(nil, `listen: ":5757"
environments: [production]
systemd:
  scope: system
  settle: 300ms
apps:
  demo:
    repo: acme/demo
    remote: %s
    secret_file: /etc/pushdeploy/demo.secret
`, remote), 0o644)
	if got := run(t, h, "pushdeploy", "config", "check"); got != "/etc/pushdeploy/agent.yaml: ok, apps: demo" {
		t.Errorf("pushdeploy config check: %s", got)
	}

	if typ := prop(t, h, agentUnit, "Type"); typ != "notify" {
		t.Fatalf("%s: Type=%s, want notify", agentUnit, typ)
	}
	return repo, bare, sha
}

// checkSandbox checks the running agent has what pushdeploy.service gives it and no
// more, and that systemd-analyze rates the unit within maxExposure.
func checkSandbox(t *testing.T, h *testenv.Host) {
	t.Helper()
	pid := prop(t, h, agentUnit, "MainPID")
	status := run(t, h, "cat", "/proc/"+pid+"/status")
	for _, want := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want) {
			t.Errorf("agent's /proc/%s/status lacks %q", pid, want)
		}
	}
	// What the agent's mount namespace lets it write.
	for path, writable := range map[string]bool{
		"/var/lib/pushdeploy": true, "/etc/systemd/system": true, "/tmp": true,
		"/etc/pushdeploy": false, "/usr/local/bin": false, "/etc": false, "/root": false,
	} {
		probe := path + "/.sandbox-probe"
		out, ok := try(t, h, "nsenter", "-t", pid, "-m", "--", "sh", "-c", `touch "$1" && rm "$1"`, "sh", probe)
		if ok != writable {
			t.Errorf("agent writing %s: succeeded %v, want %v (%s)", probe, ok, writable, out)
		}
	}
	out := run(t, h, "systemd-analyze", "security", "--no-pager", agentUnit)
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no overall exposure in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security %s: %s %s", agentUnit, m[1], m[2])
	if score > maxExposure {
		t.Errorf("systemd-analyze security %s: exposure %s, want at most %.1f:\n%s", agentUnit, m[1], maxExposure, out)
	}
}

// deploy pushes sha to the agent as GitHub would and returns the deploy once it
// finished, read through the admin socket (`pushdeploy history`).
func deploy(t *testing.T, lab *testenv.Lab, h *testenv.Host, sha string) state.Deploy {
	t.Helper()
	payload, err := hooks.PushPayload(hooks.PushInput{Repo: "acme/demo", Ref: "refs/heads/deploy-production",
		Before: strings.Repeat("0", 40), After: sha, Pusher: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:5757/webhook/demo", h.IP())
	var ans *hooks.Answer
	waitFor(t, 10*time.Second, "answer from the agent at "+url, func() bool {
		ans, err = hooks.Send(t.Context(), lab.HTTPClient(), url, []byte(secret), "push", payload)
		return err == nil
	})
	if ans.Status != "queued" || ans.Deploy == "" {
		t.Fatalf("webhook answer: %+v, want queued with a deploy id", ans)
	}
	start := time.Now()
	var d state.Deploy
	waitFor(t, 60*time.Second, "finished deploy", func() bool {
		out, ok := try(t, h, "pushdeploy", "history", "demo", ans.Deploy, "--json")
		var got struct{ Deploy state.Deploy }
		if ok && json.Unmarshal([]byte(out), &got) == nil {
			d = got.Deploy
		}
		return d.Status.Final()
	})
	t.Logf("deploy %s of %.7s: %s in %v", d.ID, sha, d.Status, time.Since(start).Round(time.Millisecond))
	return d
}

// deployLog returns a deploy's log and the last lines of the agent's and the app's journal.
func deployLog(t *testing.T, h *testenv.Host, id string) string {
	t.Helper()
	var got struct{ Log string }
	out, _ := try(t, h, "pushdeploy", "history", "demo", id, "--json")
	json.Unmarshal([]byte(out), &got)
	journal, _ := try(t, h, "journalctl", "--no-pager", "-n", "40", "-u", agentUnit, "-u", appUnit)
	return got.Log + "\njournal:\n" + journal
}

// checkMetrics checks the agent's /metrics answers whole from inside the sandbox: its
// process collector reads /proc (self, and stat for the boot time).
func checkMetrics(t *testing.T, lab *testenv.Lab, h *testenv.Host) {
	t.Helper()
	resp, err := lab.HTTPClient().Get(fmt.Sprintf("http://%s:5757/metrics", h.IP()))
	if err != nil {
		t.Errorf("GET /metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("\nprocess_start_time_seconds ")) {
		t.Errorf("GET /metrics: %s, want 200 with process_start_time_seconds:\n%.2000s", resp.Status, body)
	}
}

// checkAppRuns checks the deployed instance is active and serves its release's file.
func checkAppRuns(t *testing.T, lab *testenv.Lab, h *testenv.Host) {
	t.Helper()
	if got := prop(t, h, appUnit, "ActiveState"); got != "active" {
		t.Errorf("%s: %s, want active", appUnit, got)
	}
	resp, err := lab.HTTPClient().Get(fmt.Sprintf("http://%s:8080/hello.txt", h.IP()))
	if err != nil {
		t.Errorf("GET the app's hello.txt: %v", err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "hello from the release\n" {
		t.Errorf("GET the app's hello.txt: %s %q, want the release's file", resp.Status, body)
	}
}
