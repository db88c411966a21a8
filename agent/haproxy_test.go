package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/haproxy"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
	"github.com/pushdeploy/pushdeploy/units"
)

// load sends requests through a frontend one after another until stopped (or for at most
// a minute) and counts those that failed.
type load struct {
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	sent, failed int
	errs         []string
}

func startLoad(t *testing.T, addr string) *load {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	l := &load{cancel: cancel}
	c := &http.Client{Timeout: 5 * time.Second}
	l.wg.Go(func() {
		for ctx.Err() == nil && l.sent < 100000 {
			l.sent++
			resp, err := c.Get("http://" + addr + "/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					l.sent--
					return
				}
				l.failed++
				if len(l.errs) < 5 {
					l.errs = append(l.errs, err.Error())
				}
			}
		}
	})
	return l
}

func (l *load) stop() { l.cancel(); l.wg.Wait() }

// stateWatch polls haproxy for the servers' states and records, per server, when it was
// first seen draining and when it was next seen ready and up.
type stateWatch struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	drained map[string]time.Time
	up      map[string]time.Time
	polls   int
}

func watchStates(t *testing.T, ha *haproxy.Client, backend string, servers []string) *stateWatch {
	ctx, cancel := context.WithCancel(t.Context())
	w := &stateWatch{cancel: cancel, drained: map[string]time.Time{}, up: map[string]time.Time{}}
	w.wg.Go(func() {
		for ctx.Err() == nil {
			for _, s := range servers {
				admin, oper, err := ha.State(ctx, backend, s)
				if err != nil {
					continue
				}
				now := time.Now()
				if _, ok := w.drained[s]; !ok && admin == haproxy.StateDrain {
					w.drained[s] = now
				}
				if _, ok := w.drained[s]; ok && w.up[s].IsZero() && admin == haproxy.StateReady && oper == "up" {
					w.up[s] = now
				}
			}
			w.polls++
			time.Sleep(10 * time.Millisecond)
		}
	})
	return w
}

func (w *stateWatch) stop() { w.cancel(); w.wg.Wait() }

// logLine is what the figures need of a deploy log line.
type logLine struct {
	Time    string `json:"time"`
	Message string `json:"message"`
}

// logTimes returns the times of the deploy log's lines with message msg, in order.
func logTimes(t *testing.T, path, msg string) []time.Time {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 2<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Message != msg {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z07:00", l.Time)
		if err != nil {
			t.Fatalf("log time %q: %v", l.Time, err)
		}
		out = append(out, ts)
	}
	return out
}

// TestAgent_haproxy deploys 4 instances behind a real haproxy, one at a time, under a
// steady load through the frontend: every instance is drained before it restarts and up
// again after, no request fails, and a release that fails its health check is reverted
// without leaving a server out of rotation.
func TestAgent_haproxy(t *testing.T) {
	sd := testenv.StartSystemd(t)
	hello := testenv.HelloBinary(t)
	port := testenv.FreePorts(t, 4)
	var servers []testenv.HAServer
	var names []string
	for i := range 4 {
		servers = append(servers, testenv.HAServer{Name: fmt.Sprintf("web%d", i+1), Port: port + i})
		names = append(names, servers[i].Name)
	}
	hap := testenv.StartHAProxy(t, "be_web", servers)
	const settle, minHealthy = 300 * time.Millisecond, 300 * time.Millisecond
	f := newFixture(t, func(c *config.Config) {
		onSystemd(t, c, sd, settle)
		c.Apps["web"].HAProxy = &config.HAProxy{Socket: hap.Socket, Backend: "be_web", Server: "web{instance}", DrainTimeout: 5 * time.Second}
	})
	ha := &haproxy.Client{Socket: hap.Socket}
	deploy := func(version, healthPath string) *state.Deploy {
		t.Helper()
		f.repo.Write("VERSION", version+"\n", 0o644)
		f.repo.Write("bin/hello", hello, 0o755)
		f.repo.Write("service.json", fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "instances": 4, "port": %d,
			"health": {"http": %q, "timeout": "200ms", "interval": "100ms", "min_healthy_time": %q, "healthy_deadline": "1s"},
			"rollout": {"max_parallel": 1}}}}`, port, healthPath, minHealthy), 0o644)
		sha := f.repo.Commit("version " + version)
		return f.pushAndDeploy(sha)
	}
	allUp := func(when string) {
		t.Helper()
		for _, s := range names {
			admin, oper, err := ha.State(t.Context(), "be_web", s)
			if err != nil || admin != haproxy.StateReady || oper != "up" {
				t.Errorf("%s: server %s: got %s/%s (%v), want ready/up", when, s, admin, oper, err)
			}
		}
	}

	if d := deploy("1", "/health"); d.Status != state.StatusSucceeded {
		t.Fatalf("version 1: got %s (%s), want succeeded", d.Status, d.Error)
	}
	allUp("after version 1")

	l := startLoad(t, hap.Addr)
	w := watchStates(t, ha, "be_web", names)
	begin := time.Now()
	d := deploy("2", "/health")
	took := time.Since(begin)
	w.stop()
	l.stop()
	if d.Status != state.StatusSucceeded {
		t.Fatalf("version 2: got %s (%s), want succeeded", d.Status, d.Error)
	}
	t.Logf("version 2 under load: %d requests sent, %d failed %v; %d polls of haproxy", l.sent, l.failed, l.errs, w.polls)
	if l.sent == 0 || l.failed != 0 {
		t.Errorf("version 2 under load: %d of %d requests failed, want 0: %v", l.failed, l.sent, l.errs)
	}
	eng, err := f.agent.engine(t.Context(), "web")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range names {
		st, err := eng.Manager.State(t.Context(), units.UnitName("web", "web", i+1))
		if err != nil {
			t.Fatal(err)
		}
		drained, up := w.drained[s], w.up[s]
		t.Logf("server %s: drain seen %v, restarted %v, ready and up seen %v", s,
			drained.Format("15:04:05.000"), st.Since.Format("15:04:05.000"), up.Format("15:04:05.000"))
		// Polls are 10ms apart and systemd stamps in microseconds: allow a poll's slack.
		if drained.IsZero() || st.Since.Before(drained.Add(-20*time.Millisecond)) {
			t.Errorf("server %s: restarted at %v, not after it was seen draining (%v)", s, st.Since, drained)
		}
		if up.IsZero() || up.Before(st.Since) {
			t.Errorf("server %s: restarted at %v, not seen ready and up after (%v)", s, st.Since, up)
		}
	}
	allUp("after version 2")
	logFile := f.cfg.Layout().DeployLog("web", d.ID)
	started, healthy := logTimes(t, logFile, "batch started"), logTimes(t, logFile, "batch healthy")
	if len(started) != 4 || len(healthy) != 4 {
		t.Fatalf("version 2: %d batches started and %d healthy in the deploy log, want 4", len(started), len(healthy))
	}
	var perBatch []string
	for i := range started {
		perBatch = append(perBatch, healthy[i].Sub(started[i]).Round(time.Millisecond).String())
	}
	t.Logf("version 2: rollout %v (first batch started to last healthy; deploy %v), batches %v; sum of settle+min_healthy_time over 4 batches %v",
		healthy[3].Sub(started[0]).Round(time.Millisecond), took.Round(time.Millisecond), perBatch, 4*(settle+minHealthy))

	l = startLoad(t, hap.Addr)
	d = deploy("3", "/nope")
	l.stop()
	if d.Status != state.StatusFailed || !strings.Contains(d.Error, "previous units put back and healthy") {
		t.Fatalf("sick version 3: got %s (%s), want failed and reverted", d.Status, d.Error)
	}
	t.Logf("sick version 3 under load: %d requests sent, %d failed %v", l.sent, l.failed, l.errs)
	if l.sent == 0 || l.failed != 0 {
		t.Errorf("sick version 3 under load: %d of %d requests failed, want 0: %v", l.failed, l.sent, l.errs)
	}
	allUp("after the sick version 3")
	logFile = f.cfg.Layout().DeployLog("web", d.ID)
	failed, reverted := logTimes(t, logFile, "instance unhealthy"), logTimes(t, logFile, "batch reverted")
	if len(failed) == 0 || len(reverted) == 0 {
		t.Fatalf("sick version 3: %d unhealthy verdicts and %d reverted batches in the deploy log, want some", len(failed), len(reverted))
	}
	t.Logf("sick version 3: failed check to every instance back on version 2 (healthy, in rotation): %v",
		reverted[len(reverted)-1].Sub(failed[0]).Round(time.Millisecond))
	for i := range 4 {
		if got := get(fmt.Sprintf("http://127.0.0.1:%d/", port+i)); got != "hello from version 2" {
			t.Errorf("instance %d: got %q, want version 2", i+1, got)
		}
	}
}
