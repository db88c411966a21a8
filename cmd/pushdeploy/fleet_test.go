package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

func cliOK(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("pushdeploy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fakeHosts publishes registry entries for hosts of env in etcd, as their agents would;
// the sessions end with the test. sha maps host → the commit it runs, marked good.
func fakeHosts(t *testing.T, e *testenv.Etcd, env string, shas map[string]string) map[string]*fleet.Session {
	t.Helper()
	out := map[string]*fleet.Session{}
	for host, sha := range shas {
		st, err := fleet.Open(fleet.Config{Conn: etcdconn.Config{Endpoints: e.Endpoints}, LeaseTTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		se, err := st.Session(host)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); se.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done; st.Close() })
		h := &fleet.Host{Env: env, Apps: map[string]*fleet.App{"web": {SHA: sha, Mark: "good",
			Last: &fleet.Deploy{ID: "d-" + host, Kind: "deploy", SHA: sha, Status: "succeeded", Since: time.Now()}}}}
		if err := se.Publish(ctx, h); err != nil {
			t.Fatal(err)
		}
		out[host] = se
	}
	// Wait until every entry is in etcd (Publish before the lease only keeps it).
	st, err := fleet.Open(fleet.Config{Conn: etcdconn.Config{Endpoints: e.Endpoints}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		snap, err := st.Read(context.Background())
		n := 0
		if err == nil {
			for _, h := range snap.Hosts {
				if _, ok := shas[h.Host]; ok && h.Env == env && h.Alive {
					n++
				}
			}
		}
		if n >= len(shas) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry: %d of %d hosts of %s after 5s", n, len(shas), env)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFleetCmd(t *testing.T) {
	newEnvCLI(t) // clears ETCDCTL_* and PUSHDEPLOY_ENV
	e := testenv.StartEtcd(t)
	conn := []string{"--config=", "--endpoints", strings.Join(e.Endpoints, ",")}
	v1 := strings.Repeat("a", 40)
	hosts := fakeHosts(t, e, "staging", map[string]string{"web-1": v1, "web-2": v1})
	out := cliOK(t, append([]string{"fleet", "status", "web", "--env", "staging"}, conn...)...)
	for _, want := range []string{"web/staging: converged on aaaaaaaaaaaa (2 hosts)", "web-1", "web-2", "good", "succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("fleet status lacks %q:\n%s", want, out)
		}
	}
	var sums []fleet.Summary
	if err := json.Unmarshal([]byte(cliOK(t, append([]string{"fleet", "status", "--json"}, conn...)...)), &sums); err != nil || len(sums) != 1 || sums[0].OnTarget != 2 {
		t.Errorf("fleet status --json: %+v, %v", sums, err)
	}
	// A failure halts the commit: status says so, resume clears it.
	slot, err := hosts["web-1"].Acquire(context.Background(), fleet.Ticket{App: "web", Env: "staging", SHA: v1, Deploy: "d", Policy: &fleet.Policy{MaxParallel: 1, HaltOnFailure: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	slot.Release(context.Background(), fleet.Failed, "script exited 1")
	out = cliOK(t, append([]string{"fleet", "status", "web"}, conn...)...)
	if !strings.Contains(out, "halted aaaaaaaaaaaa: failed on web-1") || !strings.Contains(out, "script exited 1") {
		t.Errorf("fleet status does not show the halt:\n%s", out)
	}
	out = cliOK(t, append([]string{"fleet", "resume", "web", "--env", "staging"}, conn...)...)
	if !strings.Contains(out, "web/staging: resumed aaaaaaaaaaaa (it failed on web-1: script exited 1)") {
		t.Errorf("fleet resume: %s", out)
	}
	if out = cliOK(t, append([]string{"fleet", "resume", "web", "--env", "staging"}, conn...)...); !strings.Contains(out, "nothing halted") {
		t.Errorf("fleet resume again: %s", out)
	}
	if _, err := runCLI(t, append([]string{"fleet", "status", "nope"}, conn...)...); err == nil || !strings.Contains(err.Error(), "no host has registered it") {
		t.Errorf("status of an unknown app: %v", err)
	}
}

func TestLockCmd(t *testing.T) {
	newEnvCLI(t)
	e := testenv.StartEtcd(t)
	conn := []string{"--config=", "--endpoints", strings.Join(e.Endpoints, ","), "--env", "production"}
	t.Setenv("USER", "alice")
	if _, err := runCLI(t, append([]string{"lock", "web"}, conn...)...); err == nil || !strings.Contains(err.Error(), "-m") {
		t.Errorf("lock without -m: %v", err)
	}
	out := cliOK(t, append([]string{"lock", "web", "-m", "db migration"}, conn...)...)
	if !strings.Contains(out, "web/production: locked by alice@") || !strings.Contains(out, "db migration (fleet-wide)") {
		t.Errorf("lock: %s", out)
	}
	if _, err := runCLI(t, append([]string{"lock", "web", "-m", "again"}, conn...)...); err == nil || !strings.Contains(err.Error(), "already locked by alice@") {
		t.Errorf("second lock: %v", err)
	}
	var ans lockAnswer
	if err := json.Unmarshal([]byte(cliOK(t, append([]string{"lock", "status", "web", "--json"}, conn...)...)), &ans); err != nil || !ans.Locked || ans.Lock.Why != "db migration" || ans.Scope != "fleet-wide" {
		t.Errorf("lock status --json: %+v, %v", ans, err)
	}
	if out = cliOK(t, append([]string{"unlock", "web"}, conn...)...); !strings.Contains(out, "web/production: unlocked (was locked by alice@") {
		t.Errorf("unlock: %s", out)
	}
	if out = cliOK(t, append([]string{"lock", "status", "web"}, conn...)...); !strings.Contains(out, "web/production: unlocked") {
		t.Errorf("lock status after unlock: %s", out)
	}

	// Without etcd the lock holds this host, in its data directory.
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s\n"), 0o600)
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("host: web-1\ndata_dir: %s/data\nenvironments: [production]\napps:\n  web:\n    repo: acme/web\n    remote: https://x/y.git\n    secret_file: %s\n", dir, secret)), 0o600)
	if out = cliOK(t, "lock", "web", "-m", "freeze", "--config", cfg); !strings.Contains(out, "web on web-1: locked by alice@") || !strings.Contains(out, "this host only") {
		t.Errorf("local lock: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "apps", "web", "lock.json")); err != nil {
		t.Errorf("local lock file: %v", err)
	}
	if out = cliOK(t, "lock", "status", "web", "--config", cfg); !strings.Contains(out, "locked by alice@") || !strings.Contains(out, "freeze") {
		t.Errorf("local lock status: %s", out)
	}
	if out = cliOK(t, "unlock", "web", "--config", cfg); !strings.Contains(out, "unlocked") {
		t.Errorf("local unlock: %s", out)
	}
}

func TestPromoteCmd(t *testing.T) {
	newEnvCLI(t)
	e := testenv.StartEtcd(t)
	repo := testenv.NewRepo(t)
	bare := testenv.NewBare(t, testenv.NewRoot(t), "acme/web.git", true)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s\n"), 0o600)
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s/data\nenvironments: [staging]\netcd:\n  endpoints: [%s]\napps:\n  web:\n    repo: acme/web\n    remote: %s\n    secret_file: %s\n",
		dir, e.Endpoints[0], testenv.FileURL(bare.Path()), secret)), 0o600)
	tip := func(b string) string { return strings.TrimSpace(bare.Git("rev-parse", "refs/heads/"+b)) }
	promote := func(args ...string) (string, error) {
		return runCLI(t, append([]string{"promote", "web", "--from", "staging", "--to", "production", "--config", cfg}, args...)...)
	}

	repo.Write("VERSION", "1\n", 0o644)
	v1 := repo.Commit("one")
	repo.Write("VERSION", "2\n", 0o644)
	v2 := repo.Commit("two")
	repo.Push(bare, "main:deploy-staging")
	fakeHosts(t, e, "staging", map[string]string{"s-1": v1, "s-2": v1})
	out, err := promote()
	if err != nil || !strings.Contains(out, "created deploy-production at "+v1[:12]+", good on 2 staging host(s): s-1, s-2") || tip("deploy-production") != v1 {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	// Staging hosts that disagree: refused, unless --sha names one that is good there.
	fakeHosts(t, e, "staging", map[string]string{"s-3": v2})
	if _, err = promote(); err == nil || !strings.Contains(err.Error(), "the hosts run different commits") {
		t.Errorf("promote of a split staging: %v", err)
	}
	out, err = promote("--sha", v2[:8], "--json")
	var ans promoteAnswer
	if err != nil || json.Unmarshal([]byte(out), &ans) != nil || !ans.Move.FastForward || ans.Move.Old != v1 || tip("deploy-production") != v2 {
		t.Fatalf("promote --sha: %v\n%s", err, out)
	}
	// A production-only commit is not silently dropped.
	repo.Git("checkout", "-q", "-b", "hotfix", v2)
	repo.Write("HOTFIX", "x\n", 0o644)
	fix := repo.Commit("hotfix")
	repo.Push(bare, "hotfix:deploy-production")
	if _, err = promote("--sha", v1); err == nil || !strings.Contains(err.Error(), "not a fast-forward") || tip("deploy-production") != fix {
		t.Errorf("promote over a hotfix: %v", err)
	}
	if out, err = promote("--sha", v1, "--force"); err != nil || !strings.Contains(out, "forced") || tip("deploy-production") != v1 {
		t.Errorf("promote --force: %v\n%s", err, out)
	}
}
