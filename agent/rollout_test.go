package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// downWatch polls the instances' ports until stopped and records the most that did not
// accept a connection at the same time.
type downWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	max    int
	polls  int
}

func watchPorts(t *testing.T, port, n int) *downWatch {
	ctx, cancel := context.WithCancel(t.Context())
	w := &downWatch{cancel: cancel}
	w.wg.Go(func() {
		for ctx.Err() == nil {
			down := 0
			for i := range n {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port+i), 200*time.Millisecond)
				if err != nil {
					down++
					continue
				}
				c.Close()
			}
			w.polls++
			w.max = max(w.max, down)
			time.Sleep(5 * time.Millisecond)
		}
	})
	return w
}

func (w *downWatch) stop() { w.cancel(); w.wg.Wait() }

// TestAgent_rollout deploys 4 instances with max_parallel 2 and HTTP health checks: a healthy
// release rolls over in 2 batches, never more than 2 instances down; a release whose check
// never passes fails, is marked bad with the reason, and every moved instance is back on the
// previous release; retention keeps the good releases and the bad one.
func TestAgent_rollout(t *testing.T) {
	sd := testenv.StartSystemd(t)
	hello := testenv.HelloBinary(t)
	port := testenv.FreePorts(t, 4)
	f := newFixture(t, func(c *config.Config) {
		onSystemd(t, c, sd, 300*time.Millisecond)
	})
	const timing = `"timeout": "200ms", "interval": "100ms", "min_healthy_time": "300ms"`
	deploy := func(version, healthPath, deadline string) (*state.Deploy, int) {
		t.Helper()
		f.repo.Write("VERSION", version+"\n", 0o644)
		f.repo.Write("bin/hello", hello, 0o755)
		f.repo.Write("service.json", fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "instances": 4, "port": %d,
			"health": {"http": %q, %s, "healthy_deadline": %q}, "rollout": {"max_parallel": 2}}}}`,
			port, healthPath, timing, deadline), 0o644)
		sha := f.repo.Commit("version " + version)
		f.push("deploy-production")
		w := watchPorts(t, port, 4)
		r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), sha)
		if r.Code != 202 {
			t.Fatalf("version %s: got %d %s", version, r.Code, r.Error)
		}
		d := f.wait(r.Deploy)
		w.stop()
		t.Logf("version %s: %d polls of the 4 ports, at most %d down at once", version, w.polls, w.max)
		return d, w.max
	}
	answers := func(want string) {
		t.Helper()
		for i := 0; i < 4; i++ {
			if got := get(fmt.Sprintf("http://127.0.0.1:%d/", port+i)); got != want {
				t.Errorf("instance %d: got %q, want %q", i+1, got, want)
			}
		}
	}
	deployLog := func(d *state.Deploy) string {
		data, _ := os.ReadFile(f.cfg.Layout().DeployLog("web", d.ID))
		return string(data)
	}

	for _, v := range []string{"1", "2"} {
		begin := time.Now()
		d, down := deploy(v, "/health", "5s")
		if d.Status != state.StatusSucceeded {
			t.Fatalf("version %s: got %s (%s), want succeeded", v, d.Status, d.Error)
		}
		t.Logf("version %s: deploy took %v", v, time.Since(begin).Round(time.Millisecond))
		answers("hello from version " + v)
		if v == "2" && down > 2 {
			t.Errorf("version %s: %d instances down at once, want at most max_parallel 2", v, down)
		}
		log := deployLog(d)
		if n := strings.Count(log, `"message":"batch healthy"`); n != 2 {
			t.Errorf("version %s: %d batches healthy in the deploy log, want 2", v, n)
		}
		if n := strings.Count(log, `"verdict":"healthy"`); n != 4 {
			t.Errorf("version %s: %d instance verdicts healthy in the deploy log, want 4", v, n)
		}
	}
	good := f.current()

	begin := time.Now()
	d, down := deploy("3", "/nope", "1s")
	t.Logf("sick version: failed and reverted in %v", time.Since(begin).Round(time.Millisecond))
	if d.Status != state.StatusFailed {
		t.Fatalf("sick release: got %s, want failed", d.Status)
	}
	t.Logf("deploy error: %s", d.Error)
	for _, want := range []string{"batch 1 of 2: health check: pushdeploy-web-web@", "http /nope", "status 404", "previous units put back and healthy"} {
		if !strings.Contains(d.Error, want) {
			t.Errorf("deploy error does not say %q: %s", want, d.Error)
		}
	}
	if down > 2 {
		t.Errorf("sick release: %d instances down at once, want at most max_parallel 2", down)
	}
	if got := f.current(); got != good {
		t.Errorf("current: got %.12s, want %.12s kept", got, good)
	}
	answers("hello from version 2")
	if log := deployLog(d); !strings.Contains(log, `"verdict":"unhealthy"`) || strings.Count(log, `"message":"batch reverted"`) != 1 {
		t.Errorf("deploy log lacks the unhealthy verdict or the reverted batch:\n%s", log)
	}

	if _, err := f.agent.GC("web"); err != nil {
		t.Fatal(err)
	}
	rels, err := f.agent.store.List("web")
	if err != nil {
		t.Fatal(err)
	}
	marks := map[string]release.Mark{}
	for _, r := range rels {
		marks[r.SHA] = r.Mark
		if r.SHA == d.SHA && !strings.Contains(r.Reason, "status 404") {
			t.Errorf("bad release's reason: got %q, want the failed check", r.Reason)
		}
	}
	if len(rels) != 3 || marks[d.SHA] != release.Bad || marks[good] != release.Good {
		t.Errorf("releases after gc: got %v, want 2 good and the bad %.12s", marks, d.SHA)
	}
}
