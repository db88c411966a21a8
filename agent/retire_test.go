package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/haproxy"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
	"github.com/pushdeploy/pushdeploy/units"
)

// TestAgent_haproxyRetire deploys, under a steady load through a real haproxy, a release
// that scales web from 2 instances to 1 and drops service api: the instances that go away
// are drained before they stop, so no request fails, and their servers are in maintenance
// afterwards, where they stay, while web1 serves, until a release brings web2 back.
func TestAgent_haproxyRetire(t *testing.T) {
	sd := testenv.StartSystemd(t)
	hello := testenv.HelloBinary(t)
	port := testenv.FreePorts(t, 3) // web1, web2, api1
	servers := []testenv.HAServer{{Name: "web1", Port: port}, {Name: "web2", Port: port + 1}, {Name: "api1", Port: port + 2}}
	hap := testenv.StartHAProxy(t, "be_app", servers)
	f := newFixture(t, func(c *config.Config) {
		onSystemd(t, c, sd, 300*time.Millisecond)
		c.Apps["web"].HAProxy = &config.HAProxy{Socket: hap.Socket, Backend: "be_app", Server: "{service}{instance}", DrainTimeout: 5 * time.Second}
	})
	ha := &haproxy.Client{Socket: hap.Socket}
	const health = `"health": {"http": "/health", "interval": "100ms", "min_healthy_time": "300ms", "healthy_deadline": "5s"}`
	deploy := func(version, services string) *state.Deploy {
		t.Helper()
		f.repo.Write("VERSION", version+"\n", 0o644)
		f.repo.Write("bin/hello", hello, 0o755)
		f.repo.Write("service.json", `{"services": {`+services+`}}`, 0o644)
		return f.pushAndDeploy(f.repo.Commit("version " + version))
	}
	states := func(when string, want map[string]string) {
		t.Helper()
		for server, w := range want {
			admin, oper, err := ha.State(t.Context(), "be_app", server)
			if got := admin + "/" + oper; err != nil || got != w {
				t.Errorf("%s: server %s: got %s (%v), want %s", when, server, got, err, w)
			}
		}
	}

	v1 := fmt.Sprintf(`"web": {"command": ["bin/hello"], "instances": 2, "port": %d, %s},
		"api": {"command": ["bin/hello"], "port": %d, %s}`, port, health, port+2, health)
	if d := deploy("1", v1); d.Status != state.StatusSucceeded {
		t.Fatalf("version 1: %s (%s)", d.Status, d.Error)
	}
	states("after version 1", map[string]string{"web1": "ready/up", "web2": "ready/up", "api1": "ready/up"})

	// Four clients at once, so that requests are under way on every server whenever one
	// goes: a server stopped without a drain fails some.
	var loads []*load
	for range 4 {
		loads = append(loads, startLoad(t, hap.Addr))
	}
	time.Sleep(300 * time.Millisecond) // the load reaches every server before anything goes
	d := deploy("2", fmt.Sprintf(`"web": {"command": ["bin/hello"], "instances": 1, "port": %d, %s}`, port, health))
	time.Sleep(300 * time.Millisecond) // and goes on after
	sent, failed, errs := 0, 0, []string(nil)
	for _, l := range loads {
		l.stop()
		sent, failed, errs = sent+l.sent, failed+l.failed, append(errs, l.errs...)
	}
	if d.Status != state.StatusSucceeded {
		t.Fatalf("version 2: %s (%s)", d.Status, d.Error)
	}
	t.Logf("version 2 (web 2 → 1 instances, api removed) under load: %d requests sent by 4 clients, %d failed %v", sent, failed, errs)
	if sent == 0 || failed != 0 {
		t.Errorf("version 2 under load: %d of %d requests failed, want 0: %v", failed, sent, errs)
	}
	// haproxy's checks no longer run on a server in maintenance: its operational state is
	// what the last check saw, or down.
	for _, s := range []string{"web2", "api1"} {
		if admin, _, err := ha.State(t.Context(), "be_app", s); err != nil || admin != haproxy.StateMaint {
			t.Errorf("after version 2: server %s: admin state %s (%v), want maint", s, admin, err)
		}
	}
	states("after version 2", map[string]string{"web1": "ready/up"})
	for _, unit := range []string{units.UnitName("web", "web", 2), units.UnitName("web", "api", 1)} {
		if st, err := f.agent.sd.State(t.Context(), unit); err != nil || st.ActiveState != "inactive" {
			t.Errorf("%s: %s (%v), want inactive", unit, st.ActiveState, err)
		}
	}
	logFile := f.cfg.Layout().DeployLog("web", d.ID)
	drained, stopped, retired := logTimes(t, logFile, "haproxy server drained"), logTimes(t, logFile, "stop instance"),
		logTimes(t, logFile, "haproxy server in maintenance: instance retired")
	if len(retired) != 2 || len(stopped) != 2 {
		t.Fatalf("deploy log: %d instances stopped and %d servers retired, want 2 and 2", len(stopped), len(retired))
	}
	// web1 is drained for its restart first; then each instance that goes away.
	for i := range 2 {
		if d := drained[len(drained)-2+i]; d.After(stopped[i]) || stopped[i].After(retired[i]) {
			t.Errorf("instance %d that goes away: drained %v, stopped %v, in maintenance %v: want that order", i+1, d, stopped[i], retired[i])
		}
	}

	// Still there after the next deploy, which keeps web at 1 instance.
	if d := deploy("3", fmt.Sprintf(`"web": {"command": ["bin/hello"], "instances": 1, "port": %d, %s}`, port, health)); d.Status != state.StatusSucceeded {
		t.Fatalf("version 3: %s (%s)", d.Status, d.Error)
	}
	for _, s := range []string{"web2", "api1"} {
		if admin, _, err := ha.State(t.Context(), "be_app", s); err != nil || admin != haproxy.StateMaint {
			t.Errorf("after version 3: server %s: admin state %s (%v), want maint", s, admin, err)
		}
	}

	// A release that brings web2 back takes its server out of maintenance, once healthy.
	if d := deploy("4", fmt.Sprintf(`"web": {"command": ["bin/hello"], "instances": 2, "port": %d, %s}`, port, health)); d.Status != state.StatusSucceeded {
		t.Fatalf("version 4: %s (%s)", d.Status, d.Error)
	}
	states("after version 4", map[string]string{"web1": "ready/up", "web2": "ready/up"})
	if admin, _, err := ha.State(t.Context(), "be_app", "api1"); err != nil || admin != haproxy.StateMaint {
		t.Errorf("after version 4: server api1: admin state %s (%v), want maint", admin, err)
	}
}
