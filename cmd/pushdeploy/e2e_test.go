package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// binary builds pushdeploy once for the end-to-end tests.
func binary(t testing.TB) string {
	t.Helper()
	return build(t)
}

// build builds pushdeploy with env added to the go command's environment.
func build(t testing.TB, env ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pushdeploy")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// e2e is a real agent process and a bare repo whose post-receive hook is the real CLI.
type e2e struct {
	t                *testing.T
	bin, dir, config string
	repo             *testenv.Repo
	bare             *testenv.Bare
	env              []string // added to the agent's environment
	agent            *exec.Cmd
	exited           chan struct{}
	log              *syncbuf.Buffer
	port             string
}

// newE2E is setupE2E with the agent started.
func newE2E(t *testing.T) *e2e {
	e := setupE2E(t)
	e.start()
	return e
}

// setupE2E writes an agent's config for app web (its script waits while gate-closed
// exists) and makes the bare repo's post-receive hook the real CLI, without starting the
// agent.
func setupE2E(t *testing.T) *e2e {
	e := &e2e{t: t, bin: binary(t), dir: t.TempDir(), repo: testenv.NewRepo(t)}
	root := testenv.NewRoot(t)
	e.bare = testenv.NewBare(t, root, "acme/web.git", true)
	secret := filepath.Join(e.dir, "secret")
	os.WriteFile(secret, []byte("e2e-secret\n"), 0o600)
	e.config = filepath.Join(e.dir, "agent.yaml")
	script := filepath.Join(e.dir, "deploy.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nwhile [ -e "+e.dir+"/gate-closed ]; do sleep 0.05; done\n"), 0o755)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	e.port = strconv.Itoa(port)
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\ndata_dir: %s/data\nenvironments: [production]\napps:\n  web:\n    repo: acme/web\n    remote: %s\n    secret_file: %s\n    script: %s\n",
		port, e.dir, testenv.FileURL(e.bare.Path()), secret, script)
	os.WriteFile(e.config, []byte(cfg), 0o600)
	hook := fmt.Sprintf("#!/bin/sh\nexec %s hooks post-receive --repo acme/web --secret-file %s --url http://127.0.0.1:%s/webhook/web\n", e.bin, secret, e.port)
	os.WriteFile(filepath.Join(e.bare.Path(), "hooks", "post-receive"), []byte(hook), 0o755)
	t.Cleanup(func() { e.kill(syscall.SIGKILL) })
	return e
}

var listenRE = regexp.MustCompile(`"listen":"127\.0\.0\.1:(\d+)"`)

func (e *e2e) start() {
	e.t.Helper()
	e.log = new(syncbuf.Buffer)
	e.agent = exec.Command(e.bin, "agent", "--config", e.config, "--log-format", "json")
	e.agent.Stderr = e.log
	if e.env != nil {
		e.agent.Env = append(os.Environ(), e.env...)
	}
	if err := e.agent.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.exited = make(chan struct{})
	go func() { e.agent.Wait(); close(e.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRE.FindStringSubmatch(e.agentLog()); m != nil {
			if e.port != "" && m[1] != e.port {
				e.t.Fatalf("agent came back on port %s, want %s", m[1], e.port)
			}
			e.port = m[1]
			return
		}
		select {
		case <-e.exited:
			e.t.Fatalf("agent exited:\n%s", e.agentLog())
		case <-time.After(20 * time.Millisecond):
		}
	}
	e.t.Fatalf("agent did not start:\n%s", e.agentLog())
}

func (e *e2e) agentLog() string { return e.log.String() }

func (e *e2e) kill(sig syscall.Signal) {
	if e.agent == nil || e.agent.Process == nil {
		return
	}
	e.agent.Process.Signal(sig)
	<-e.exited
}

// cli runs the CLI and returns its output, failing the test on a non-zero exit.
func (e *e2e) cli(args ...string) string {
	e.t.Helper()
	out, err := exec.Command(e.bin, append(args, "--config", e.config)...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("pushdeploy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// cliFails runs the CLI and returns its output, failing the test unless it exits non-zero.
func (e *e2e) cliFails(args ...string) string {
	e.t.Helper()
	out, err := exec.Command(e.bin, append(args, "--config", e.config)...).CombinedOutput()
	if err == nil {
		e.t.Fatalf("pushdeploy %s: exited 0, want an error\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

type deployJSON struct {
	ID, SHA, Status, Error string
}

// waitStatus polls the history until the deploy of sha has the given status.
func (e *e2e) waitStatus(sha, status string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var hist []deployJSON
		json.Unmarshal([]byte(e.cli("history", "web", "--json")), &hist)
		for _, d := range hist {
			if d.SHA == sha && d.Status == status {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("deploy of %.12s never reached %s; agent log:\n%s", sha, status, e.agentLog())
}

// waitFor polls the history until the deploy of sha is final.
func (e *e2e) waitFor(sha string) deployJSON {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var hist []deployJSON
		json.Unmarshal([]byte(e.cli("history", "web", "--json")), &hist)
		for _, d := range hist {
			if d.SHA == sha && (d.Status == "succeeded" || d.Status == "failed" || d.Status == "stale" || d.Status == "superseded") {
				return d
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("deploy of %.12s did not finish; agent log:\n%s", sha, e.agentLog())
	return deployJSON{}
}

func TestE2E_pushDeploys(t *testing.T) {
	e := newE2E(t)
	e.repo.Write("VERSION", "1\n", 0o644)
	e.repo.Write("bin/server", "#!/bin/sh\necho v1\n", 0o755)
	e.repo.Symlink("start", "bin/server")
	v1 := e.repo.Commit("one")
	e.repo.Git("push", e.bare.Path(), "main:deploy-production")
	if d := e.waitFor(v1); d.Status != "succeeded" {
		t.Fatalf("first push: got %s (%s), want succeeded", d.Status, d.Error)
	}
	if got := e.cli("releases", "check", "web"); !strings.Contains(got, "matches its commit exactly") {
		t.Errorf("releases check: got %q", got)
	}
	if got := e.cli("status", "web"); !strings.Contains(got, v1[:12]) || !strings.Contains(got, "good") {
		t.Errorf("status does not show %.12s as current and good:\n%s", v1, got)
	}

	// kill -9 while a deploy is running its script: current stays on v1, and the accepted
	// deploy runs again when the agent comes back.
	closed := filepath.Join(e.dir, "gate-closed")
	os.WriteFile(closed, nil, 0o644)
	e.repo.Write("VERSION", "2\n", 0o644)
	v2 := e.repo.Commit("two")
	e.repo.Git("push", e.bare.Path(), "main:deploy-production")
	e.waitStatus(v2, "running-script")
	e.kill(syscall.SIGKILL)
	if got := e.cli("status", "web"); !strings.Contains(got, "current  "+v1[:12]) {
		t.Errorf("after kill -9 mid-deploy, current moved:\n%s", got)
	}
	if got := e.cli("releases", "check", "web"); !strings.Contains(got, "matches") {
		t.Errorf("after kill -9: releases check: %s", got)
	}
	os.Remove(closed)
	e.start()
	if d := e.waitFor(v2); d.Status != "succeeded" {
		t.Fatalf("resumed deploy: got %s (%s), want succeeded", d.Status, d.Error)
	}
	e.repo.Write("VERSION", "3\n", 0o644)
	v3 := e.repo.Commit("three")
	e.repo.Git("push", e.bare.Path(), "main:deploy-production")
	if d := e.waitFor(v3); d.Status != "succeeded" {
		t.Fatalf("push after restart: got %s (%s), want succeeded", d.Status, d.Error)
	}
	data, err := os.ReadFile(filepath.Join(datadir.Layout{Root: filepath.Join(e.dir, "data")}.Current("web"), "VERSION"))
	if err != nil || string(data) != "3\n" {
		t.Errorf("current/VERSION: got %q, %v; want 3", data, err)
	}

	// rollback goes back to the previous good release through the queue and waits for it.
	if got := e.cli("rollback", "web"); !strings.Contains(got, "rollback of "+v2[:12]+" queued") || !strings.Contains(got, "rollback succeeded") {
		t.Errorf("rollback: %s", got)
	}
	if got := e.cli("history", "web"); !strings.Contains(got, "rollback") {
		t.Errorf("history does not list the rollback:\n%s", got)
	}
	if data, _ := os.ReadFile(filepath.Join(datadir.Layout{Root: filepath.Join(e.dir, "data")}.Current("web"), "VERSION")); string(data) != "2\n" {
		t.Errorf("current/VERSION after rollback: got %q, want 2", data)
	}
	if got := e.cliFails("restart", "web"); !strings.Contains(got, "runs no services") {
		t.Errorf("restart of an app without services: %s", got)
	}

	// With the agent down the CLI reads the state from disk.
	e.kill(syscall.SIGTERM)
	// The agent reads another file than the packaged service's: starting the service
	// would not help, and the CLI says how to start the agent that would answer.
	if got := e.cliFails("restart", "web"); !strings.Contains(got, "restart needs the agent running") ||
		!strings.Contains(got, "start it: pushdeploy agent --config "+e.config) {
		t.Errorf("restart with the agent down: %s", got)
	}
	if got := e.cli("status", "web"); !strings.Contains(got, "agent not running") || !strings.Contains(got, v2[:12]) {
		t.Errorf("status with the agent down:\n%s", got)
	}
	if got := e.cli("releases", "gc", "web"); !strings.Contains(got, "kept 5 newest releases") {
		t.Errorf("releases gc with the agent down: %s", got)
	}
}
