package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// fleetRig is a fleet of real agent processes on this machine, each with its own data
// directory, port and admin socket, deploying app "web" from one bare repository over
// file:// and coordinating through one etcd (Debian's etcd-server, a process of its own as
// on a real network, and not slowed by a -race test binary). Its deploy script sleeps and
// fails for a commit that holds a file named FAIL. Every agent is killed in t.Cleanup.
type fleetRig struct {
	t      testing.TB
	bin    string
	dir    string
	etcd   *testenv.Etcd
	repo   *testenv.Repo
	bare   *testenv.Bare
	secret []byte
	store  *fleet.Store
	agents []*rigAgent
}

// rigOptions shape a rig's agents.
type rigOptions struct {
	hosts       int
	maxParallel string        // apps.web.fleet.max_parallel
	canary      int           // apps.web.fleet.canary_hosts
	sleep       string        // the deploy script's sleep, e.g. "0.2"
	leaseTTL    time.Duration // etcd.lease_ttl
}

type rigAgent struct {
	host, dir, config, logPath string
	addr                       string
	cmd                        *exec.Cmd
	exited                     chan struct{}
	started                    time.Time
	admin                      *admin.Client
}

func newFleetRig(t testing.TB, bin string, o rigOptions) *fleetRig {
	t.Helper()
	r := &fleetRig{t: t, bin: bin, dir: t.TempDir(), etcd: testenv.StartEtcdServer(t), repo: testenv.NewRepo(t), secret: []byte("fleet-secret")}
	r.bare = testenv.NewBare(t, testenv.NewRoot(t), "acme/web.git", true)
	st, err := fleet.Open(fleet.Config{Conn: etcdconn.Config{Endpoints: r.etcd.Endpoints}})
	if err != nil {
		t.Fatal(err)
	}
	r.store = st
	t.Cleanup(func() { st.Close() })
	os.WriteFile(filepath.Join(r.dir, "secret"), r.secret, 0o600)
	for i := range o.hosts {
		a := &rigAgent{host: fmt.Sprintf("h%02d", i), dir: filepath.Join(r.dir, fmt.Sprintf("h%02d", i))}
		a.config, a.logPath = filepath.Join(a.dir, "agent.yaml"), filepath.Join(a.dir, "agent.log")
		os.MkdirAll(a.dir, 0o755)
		a.admin = admin.NewClient(filepath.Join(a.dir, "data", "run", "admin.sock"))
		r.agents = append(r.agents, a)
	}
	r.configure(o)
	t.Cleanup(func() {
		for _, a := range r.agents {
			a.kill()
		}
	})
	return r
}

// configure writes every agent's configuration (and the deploy script) for o; agents
// read it when they start.
func (r *fleetRig) configure(o rigOptions) {
	r.t.Helper()
	script := filepath.Join(r.dir, "deploy.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsleep "+o.sleep+"\ntest ! -e FAIL\n"), 0o755); err != nil {
		r.t.Fatal(err)
	}
	for _, a := range r.agents {
		cfg := fmt.Sprintf(`listen: 127.0.0.1:0
host: %s
data_dir: %s/data
environments: [production]
reconcile_interval: 1h
etcd:
  endpoints: [%s]
  lease_ttl: %s
apps:
  web:
    repo: acme/web
    remote: %s
    secret_file: %s
    script: %s
    fleet: {max_parallel: %q, canary_hosts: %d, halt_on_failure: true}
`, a.host, a.dir, r.etcd.Endpoints[0], o.leaseTTL, testenv.FileURL(r.bare.Path()), filepath.Join(r.dir, "secret"), script, o.maxParallel, o.canary)
		if err := os.WriteFile(a.config, []byte(cfg), 0o600); err != nil {
			r.t.Fatal(err)
		}
	}
}

var rigListenRE = regexp.MustCompile(`"listen":"(127\.0\.0\.1:\d+)"`)

// start starts the agents at once and waits until each listens.
func (r *fleetRig) start(agents ...*rigAgent) {
	r.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(agents))
	for _, a := range agents {
		wg.Go(func() {
			if err := a.start(r.bin); err != nil {
				errs <- fmt.Errorf("%s: %w", a.host, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		r.t.Fatal(err)
	}
}

func (a *rigAgent) start(bin string) error {
	logFile, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own
	// The log is appended to across restarts: only this run's lines count.
	var from int64
	if fi, err := logFile.Stat(); err == nil {
		from = fi.Size()
	}
	a.cmd = exec.Command(bin, "agent", "--config", a.config, "--log-format", "json")
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	a.started = time.Now()
	if err := a.cmd.Start(); err != nil {
		return err
	}
	a.exited = make(chan struct{})
	go func() { a.cmd.Wait(); close(a.exited) }() // kill waits for it
	// 49 agents starting at once on a busy 2-CPU machine can take a while each.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(a.logPath)
		if m := rigListenRE.FindSubmatch(data[min(from, int64(len(data))):]); m != nil {
			a.addr = string(m[1])
			return nil
		}
		select {
		case <-a.exited:
			return fmt.Errorf("agent exited:\n%s", data)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("agent did not start in 60s; log:\n%s", a.logTail())
}

// kill kills the agent's process group (it and a script it runs) and waits for it.
func (a *rigAgent) kill() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.exited
	a.cmd = nil
}

// stop stops the agent as systemd would (SIGTERM) and waits for it.
func (a *rigAgent) stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.exited
	syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	a.cmd = nil
}

func (a *rigAgent) running() bool { return a.cmd != nil }

// commit commits VERSION v, with a FAIL file when fail, and returns its sha.
func (r *fleetRig) commit(v string, fail bool) string {
	r.repo.Write("VERSION", v+"\n", 0o644)
	if fail {
		r.repo.Write("FAIL", "", 0o644)
	} else {
		r.repo.Remove("FAIL")
	}
	return r.repo.Commit("version " + v)
}

// push pushes sha to deploy-production and delivers the signed webhook to every running
// agent at once, as GitHub would.
func (r *fleetRig) push(before, sha string) time.Time {
	r.t.Helper()
	r.repo.Push(r.bare, "+main:deploy-production")
	payload, err := hooks.PushPayload(hooks.PushInput{Repo: "acme/web", Ref: "refs/heads/deploy-production", Before: before, After: sha, Pusher: "octocat"})
	if err != nil {
		r.t.Fatal(err)
	}
	pushed := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(r.agents))
	for _, a := range r.agents {
		if !a.running() {
			continue
		}
		wg.Go(func() {
			ans, err := hooks.Send(context.Background(), nil, "http://"+a.addr+"/webhook/web", r.secret, "push", payload)
			if err == nil && ans.Status != "queued" {
				err = fmt.Errorf("answered %s %s", ans.Status, ans.Reason)
			}
			if err != nil {
				errs <- fmt.Errorf("%s: %w", a.host, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		r.t.Fatal(err)
	}
	return pushed
}

// waitFleet polls the registry until done says the summary of web/production is there.
func (r *fleetRig) waitFleet(timeout time.Duration, what string, done func(fleet.Summary) bool) fleet.Summary {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var sum fleet.Summary
	for time.Now().Before(deadline) {
		snap, err := r.store.Read(context.Background())
		if err == nil {
			sum = snap.Summarize("web", "production")
			if done(sum) {
				return sum
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("after %v, %s: the fleet says %s", timeout, what, sum)
	return sum
}

// records returns each running agent's newest deploy of sha (of a pushed commit: kind
// deploy or reconcile, not a configuration change), by host.
func (r *fleetRig) records(sha string) map[string]state.Deploy {
	r.t.Helper()
	out := map[string]state.Deploy{}
	for _, a := range r.agents {
		if !a.running() {
			continue
		}
		hist, err := a.admin.History(context.Background(), "web", 0)
		if err != nil {
			r.t.Fatalf("%s: history: %v", a.host, err)
		}
		for _, d := range hist {
			if d.SHA == sha && (d.Kind == state.KindDeploy || d.Kind == state.KindReconcile) {
				out[a.host] = d
				break
			}
		}
	}
	return out
}

// mostAtOnce is the largest number of deploys whose [Started, Finished] overlap.
func mostAtOnce(recs map[string]state.Deploy) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, d := range recs {
		if d.Status == state.StatusSucceeded || d.Status == state.StatusFailed {
			edges = append(edges, edge{d.Started, 1}, edge{d.Finished, -1})
		}
	}
	// At equal times an end comes before a start: a slot is freed after Finished is recorded.
	sort.Slice(edges, func(i, j int) bool {
		return edges[i].at.Before(edges[j].at) || edges[i].at.Equal(edges[j].at) && edges[i].delta < edges[j].delta
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// etcdRequests sums pushdeploy_etcd_requests_total over every running agent, by operation.
func (r *fleetRig) etcdRequests() map[string]float64 {
	r.t.Helper()
	total := map[string]float64{}
	for _, a := range r.agents {
		if !a.running() {
			continue
		}
		resp, err := http.Get("http://" + a.addr + "/metrics")
		if err != nil {
			r.t.Fatalf("%s: metrics: %v", a.host, err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), `pushdeploy_etcd_requests_total{op="`); ok {
				op, value, _ := strings.Cut(line, `"} `)
				v, _ := strconv.ParseFloat(value, 64)
				total[op] += v
			}
		}
		resp.Body.Close()
	}
	return total
}

// requestsSince is the requests made since before (etcdRequests), per host: the total and
// a breakdown by operation.
func (r *fleetRig) requestsSince(before map[string]float64, hosts int) (float64, string) {
	now := r.etcdRequests()
	var total float64
	var parts []string
	for op, v := range now {
		d := (v - before[op]) / float64(hosts)
		total += d
		if d >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.1f", op, d))
		}
	}
	sort.Strings(parts)
	return total, strings.Join(parts, ", ")
}

// logTail is the last lines of an agent's log, for a failure message.
func (a *rigAgent) logTail() string {
	data, _ := os.ReadFile(a.logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// slots returns the hosts holding or queued for web/production's slots, in order.
func (r *fleetRig) slots() []string {
	snap, err := r.store.Read(context.Background())
	if err != nil {
		return nil
	}
	return snap.Slots["web/production"]
}

func (r *fleetRig) agent(host string) *rigAgent {
	for _, a := range r.agents {
		if a.host == host {
			return a
		}
	}
	return nil
}
