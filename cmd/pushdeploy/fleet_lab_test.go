package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/haproxy"
	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// TestFleet_labHAProxy: three booted Debian hosts behind haproxy, each running the static
// agent as a system service and a web server that the deploy script restarts; etcd, the
// git server and haproxy on the lab's bridge. A client sends requests through haproxy
// back to back while a push rolls out over the fleet with max_parallel 1: no request
// fails, haproxy never sees more than one server down, and every host ends on the push.
func TestFleet_labHAProxy(t *testing.T) {
	l := testenv.StartLab(t, testenv.LabOptions{})
	bin := build(t, "CGO_ENABLED=0")
	dir := t.TempDir()
	bridge := l.BridgeIP.String()
	client := l.HTTPClient()

	etcdURL := "http://" + bridge + ":2379"
	labServe(t, l, dir, "etcd", "--name", "lab", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://"+bridge+":2380", "--initial-advertise-peer-urls", "http://"+bridge+":2380",
		"--initial-cluster", "lab=http://"+bridge+":2380")
	waitLab(t, "etcd", func() bool { return labGet(client, etcdURL+"/health") != "" })
	root := testenv.NewRoot(t)
	bare := testenv.NewBare(t, root, "acme/web.git", true)
	repo := testenv.NewRepo(t)
	labServe(t, l, dir, "git", "daemon", "--reuseaddr", "--export-all", "--base-path="+root, "--listen="+bridge, "--port=9418", root)
	waitLab(t, "git daemon", func() bool {
		c, err := l.DialContext(t.Context(), "tcp", bridge+":9418")
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	secret := []byte("lab-secret")
	var hosts []*testenv.Host
	for _, name := range []string{"h1", "h2", "h3"} {
		h := l.Boot(t, name)
		hosts = append(hosts, h)
		h.CopyIn(t, bin, "/usr/local/bin/pushdeploy")
		h.WriteFile(t, "/etc/pushdeploy/web.secret", secret, 0o600)
		h.WriteFile(t, "/usr/local/bin/deploy-web", []byte("#!/bin/sh\nsystemctl restart lab-web\nsleep 0.3\n"), 0o755)
		h.WriteFile(t, "/etc/systemd/system/lab-web.service", []byte(`[Unit]
Description=the app: serves the current release
[Service]
ExecStartPre=/bin/mkdir -p /var/lib/pushdeploy/apps/web
ExecStart=/usr/bin/python3 -m http.server 8080 --bind 0.0.0.0 --directory /var/lib/pushdeploy/apps/web/current
`), 0o644)
		h.WriteFile(t, "/etc/pushdeploy/agent.yaml", []byte(fmt.Sprintf(`listen: 0.0.0.0:5757
host: %s
data_dir: /var/lib/pushdeploy
environments: [production]
reconcile_interval: 1h
etcd:
  endpoints: [%s]
  lease_ttl: 5s
apps:
  web:
    repo: acme/web
    remote: git://%s:9418/acme/web.git
    secret_file: /etc/pushdeploy/web.secret
    script: /usr/local/bin/deploy-web
    fleet: {max_parallel: 1, canary_hosts: 1}
`, name, etcdURL, bridge)), 0o600)
		h.Exec(t, "systemctl", "daemon-reload")
		h.Exec(t, "systemd-run", "--quiet", "--unit", "pushdeploy-agent", "/usr/local/bin/pushdeploy", "agent",
			"--config", "/etc/pushdeploy/agent.yaml", "--log-format", "json")
		waitLab(t, name+"'s agent", func() bool { return labGet(client, fmt.Sprintf("http://%s:5757/healthz", h.IP())) != "" })
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range hosts {
				out, _ := h.Run(context.Background(), "journalctl", "-u", "pushdeploy-agent", "-n", "30", "--no-pager")
				t.Logf("%s's agent:\n%s", h.Name, out)
			}
		}
	})
	push := func(before, sha string) {
		t.Helper()
		repo.Push(bare, "+main:deploy-production")
		payload, err := hooks.PushPayload(hooks.PushInput{Repo: "acme/web", Ref: "refs/heads/deploy-production", Before: before, After: sha})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			if ans, err := hooks.Send(t.Context(), client, fmt.Sprintf("http://%s:5757/webhook/web", h.IP()), secret, "push", payload); err != nil || ans.Status != "queued" {
				t.Fatalf("webhook to %s: %+v, %v", h.Name, ans, err)
			}
		}
	}
	serving := func(v string) {
		t.Helper()
		for _, h := range hosts {
			url := fmt.Sprintf("http://%s:8080/VERSION", h.IP())
			waitLab(t, h.Name+" serving "+v, func() bool { return labGet(client, url) == v+"\n" })
		}
	}

	repo.Write("VERSION", "1\n", 0o644)
	v1 := repo.Commit("one")
	push(strings.Repeat("0", 40), v1)
	serving("1")

	ha := labHAProxy(t, l, dir, hosts)
	waitLab(t, "haproxy's servers up", func() bool { return ha.down(t) == 0 })

	// The client: requests back to back through haproxy, and haproxy's view of the servers.
	stop := make(chan struct{})
	var sent, failed, mostDown atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			sent.Add(1)
			if got := labGet(client, "http://"+bridge+":8000/VERSION"); got != "1\n" && got != "2\n" {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("answer %q", got))
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if n := int64(ha.down(t)); n > mostDown.Load() {
				mostDown.Store(n)
			}
		}
	})

	repo.Write("VERSION", "2\n", 0o644)
	v2 := repo.Commit("two")
	began := time.Now()
	push(v1, v2)
	serving("2")
	took := time.Since(began)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("fleet rollout over 3 hosts in %v: %d requests through haproxy, %d failed; at most %d server(s) down at once",
		took.Round(time.Millisecond), sent.Load(), failed.Load(), mostDown.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed during the rollout (first: %v)", failed.Load(), sent.Load(), firstErr.Load())
	}
	if mostDown.Load() > 1 {
		t.Errorf("haproxy saw %d servers down at once, want at most max_parallel 1", mostDown.Load())
	}
	recs := map[string]state.Deploy{}
	for _, h := range hosts {
		var hist []state.Deploy
		if err := json.Unmarshal([]byte(h.Exec(t, "pushdeploy", "history", "web", "--json", "--config", "/etc/pushdeploy/agent.yaml")), &hist); err != nil {
			t.Fatal(err)
		}
		for _, d := range hist {
			if d.SHA == v2 && d.Kind == state.KindDeploy {
				recs[h.Name] = d
				break
			}
		}
	}
	checkRollout(t, recs, len(hosts), 1)
}

// labServe runs a program of the machine in the lab's network namespace, in its own
// process group, its output in dir/<name>.log, and kills it in t.Cleanup.
func labServe(t *testing.T, l *testenv.Lab, dir, name string, args ...string) {
	t.Helper()
	out, err := os.Create(filepath.Join(dir, filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child has its own
	cmd := l.Command(context.Background(), name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // the cleanup waits for it
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
}

// waitLab polls ok every 50ms for up to 30s.
func waitLab(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("lab: %s: not after 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// labGet returns the body of a 200 answer to GET url, "" for anything else.
func labGet(c *http.Client, url string) string {
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(body)
}

// labProxy is haproxy on the lab's bridge in front of the hosts' web servers.
type labProxy struct {
	admin   *haproxy.Client
	servers []string
}

// labHAProxy starts haproxy in the lab on BridgeIP:8000 with one server per host (port
// 8080), checked every 100ms; a request that finds its server restarting (connection
// refused or closed without an answer) is retried on another server.
func labHAProxy(t *testing.T, l *testenv.Lab, dir string, hosts []*testenv.Host) *labProxy {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "lab-haproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "admin.sock")
	cfg := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
defaults
    mode http
    timeout connect 500ms
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend fe
    bind %s:8000
    default_backend web
backend web
    balance roundrobin
`, sock, l.BridgeIP)
	p := &labProxy{admin: &haproxy.Client{Socket: sock}}
	for _, h := range hosts {
		cfg += fmt.Sprintf("    server %s %s:8080 check inter 100ms fall 1 rise 1\n", h.Name, h.IP())
		p.servers = append(p.servers, h.Name)
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		testenv.Unavailable(t, "haproxy", "not installed (Debian package haproxy)")
	}
	labServe(t, l, dir, bin, "-W", "-db", "-f", path)
	waitLab(t, "haproxy", func() bool { _, err := p.admin.Status(t.Context(), "web", p.servers[0]); return err == nil })
	return p
}

// down counts the servers haproxy does not have UP.
func (p *labProxy) down(t *testing.T) int {
	n := 0
	for _, s := range p.servers {
		if st, err := p.admin.Status(t.Context(), "web", s); err != nil || !strings.HasPrefix(st, "UP") {
			n++
		}
	}
	return n
}
