package agent

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// history returns app web's deploys of sha, newest first.
func (f *fixture) deploysOf(sha string) []state.Deploy {
	f.t.Helper()
	hist, err := f.agent.state.History("web", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []state.Deploy
	for _, d := range hist {
		if d.SHA == sha {
			out = append(out, d)
		}
	}
	return out
}

// waitFinal polls until a deploy of sha reaches a final status, and returns it.
func (f *fixture) waitFinal(sha string) state.Deploy {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ds := f.deploysOf(sha); len(ds) > 0 && ds[0].Status.Final() {
			return ds[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("no deploy of %.12s finished", sha)
	return state.Deploy{}
}

func TestAgent_reconcile(t *testing.T) {
	script := writeScript(t, `test ! -e FAIL`)
	f := newFixture(t, func(c *config.Config) {
		c.ReconcileInterval = 50 * time.Millisecond
		c.Apps["web"].Script = config.Argv{script}
	})
	// A push whose webhook never came: the agent catches up on its own.
	v1 := f.commit("1")
	f.push("deploy-production")
	d := f.waitFinal(v1)
	if d.Kind != state.KindReconcile || d.Status != state.StatusSucceeded || !strings.Contains(d.Note, "this host runs nothing") {
		t.Fatalf("catch-up: got %s %s (%s, %s), want a reconcile that succeeded", d.Kind, d.Status, d.Note, d.Error)
	}
	// A commit that fails after its release is laid out is not tried again and again.
	f.repo.Write("FAIL", "", 0o644)
	v2 := f.commit("2")
	f.push("deploy-production")
	if d := f.waitFinal(v2); d.Status != state.StatusFailed {
		t.Fatalf("failing commit: got %s, want failed", d.Status)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(f.deploysOf(v2)); n != 1 {
		t.Errorf("a failed commit was deployed %d times by catch-up, want once", n)
	}
	// While deploys are locked, catch-up queues nothing.
	if _, err := SetLocalLock(f.cfg, "web", fleet.Lock{Who: "alice", Why: "freeze", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	f.repo.Remove("FAIL")
	v3 := f.commit("3")
	f.push("deploy-production")
	time.Sleep(300 * time.Millisecond)
	if ds := f.deploysOf(v3); len(ds) != 0 {
		t.Errorf("catch-up queued %s while locked", ds[0].Status)
	}
	if _, err := RemoveLocalLock(f.cfg, "web"); err != nil {
		t.Fatal(err)
	}
	if d := f.waitFinal(v3); d.Status != state.StatusSucceeded || f.current() != v3 {
		t.Errorf("after unlock: got %s, current %.12s; want %.12s succeeded", d.Status, f.current(), v3)
	}
}

func TestAgent_localLock(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := SetLocalLock(f.cfg, "web", fleet.Lock{Who: "alice", Why: "db migration", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if held, err := SetLocalLock(f.cfg, "web", fleet.Lock{Who: "bob"}); err == nil || held == nil || held.Who != "alice" {
		t.Errorf("second lock: got %+v, %v; want alice's and an error", held, err)
	}
	v1 := f.commit("1")
	f.push("deploy-production")
	r1 := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), v1)
	f.waitStatus(r1.Deploy, state.StatusWaiting)
	if d, _ := f.agent.state.Get("web", r1.Deploy); !strings.Contains(d.Note, "locked: by alice") || !strings.Contains(d.Note, "db migration") {
		t.Errorf("waiting deploy's note: %q", d.Note)
	}
	// A newer push replaces the one waiting: newest wins.
	v2 := f.commit("2")
	f.push("deploy-production")
	r2 := f.deliver("refs/heads/deploy-production", v1, v2)
	if d := f.wait(r1.Deploy); d.Status != state.StatusSuperseded || !strings.Contains(d.Note, r2.Deploy) {
		t.Errorf("first push: got %s (%s), want superseded by %s", d.Status, d.Note, r2.Deploy)
	}
	f.waitStatus(r2.Deploy, state.StatusWaiting)
	if l, err := RemoveLocalLock(f.cfg, "web"); err != nil || l == nil || l.Who != "alice" {
		t.Fatalf("unlock: got %+v, %v", l, err)
	}
	d := f.wait(r2.Deploy)
	if d.Status != state.StatusSucceeded || f.current() != v2 || d.WaitedMS <= 0 {
		t.Errorf("after unlock: got %s, current %.12s, waited %dms; want %.12s succeeded after a wait", d.Status, f.current(), d.WaitedMS, v2)
	}
}

func TestAgent_fleet(t *testing.T) {
	e := testenv.StartEtcd(t)
	script := writeScript(t, `test ! -e FAIL`)
	f := newFixture(t, func(c *config.Config) {
		c.Etcd = &config.Etcd{Endpoints: e.Endpoints, RequestTimeout: time.Second, LeaseTTL: 2 * time.Second}
		c.Apps["web"].Script = config.Argv{script}
		c.Apps["web"].Fleet = &config.Fleet{MaxParallel: "2", CanaryHosts: 1}
		c.UI = &config.UI{Listen: "127.0.0.1:0"}
	})
	fs, err := fleet.Open(fleet.Config{Conn: etcdconn.Config{Endpoints: e.Endpoints}})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ctx := context.Background()
	// Locked in etcd: the push waits, and runs once unlocked.
	if _, err := fs.SetLock(ctx, "web", "production", fleet.Lock{Who: "alice", Why: "freeze", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	v1 := f.commit("1")
	f.push("deploy-production")
	r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), v1)
	f.waitStatus(r.Deploy, state.StatusWaiting)
	if _, err := fs.Unlock(ctx, "web", "production"); err != nil {
		t.Fatal(err)
	}
	if d := f.wait(r.Deploy); d.Status != state.StatusSucceeded {
		t.Fatalf("after unlock: got %s (%s)", d.Status, d.Error)
	}
	// The registry says what the host runs.
	var sum fleet.Summary
	waitUntil(t, 5*time.Second, "the registry shows the host converged", func() bool {
		snap, err := fs.Read(ctx)
		if err != nil {
			return false
		}
		sum = snap.Summarize("web", "production")
		return sum.Converged() && sum.Target == v1
	})
	if l := sum.Lines[0]; l.Host != "test-host" || l.Mark != "good" || l.State != "succeeded" {
		t.Errorf("registry line: %+v", l)
	}
	// The status page shows the fleet: the summary line and the host's.
	page := getPage(t, "http://"+f.agent.UIAddr()+"/")
	for _, want := range []string{`id="fleet"`, "converged on " + v1[:12] + " (1 hosts)", "<td>test-host</td>", v1[:12]} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q in its fleet section", want)
		}
	}
	// A commit that fails halts itself for the fleet; a redelivery is halted, not deployed.
	f.repo.Write("FAIL", "", 0o644)
	v2 := f.commit("2")
	f.push("deploy-production")
	r = f.deliver("refs/heads/deploy-production", v1, v2)
	if d := f.wait(r.Deploy); d.Status != state.StatusFailed {
		t.Fatalf("failing commit: got %s", d.Status)
	}
	// The slot is released, and the halt set, once the failure is recorded.
	waitUntil(t, 5*time.Second, "the failed commit is halted by this host", func() bool {
		_, h, err := fs.Check(ctx, "web", "production", v2)
		return err == nil && h != nil && h.Host == "test-host"
	})
	if got := testutil.ToFloat64(f.agent.metrics.ops.fleetHalts.WithLabelValues("web")); got != 1 {
		t.Errorf("pushdeploy_fleet_halts_total{app=web}: got %v, want 1", got)
	}
	if page := getPage(t, "http://"+f.agent.UIAddr()+"/"); !strings.Contains(page, "halted: "+v2[:12]+" failed on test-host") {
		t.Errorf("status page does not show the halt:\n%s", page)
	}
	r = f.deliver("refs/heads/deploy-production", v1, v2)
	if d := f.wait(r.Deploy); d.Status != state.StatusHalted || !strings.Contains(d.Note, "failed on test-host") {
		t.Errorf("redelivered halted commit: got %s (%s), want halted", d.Status, d.Note)
	}
	// A later push is not halted, and clears the halt.
	f.repo.Remove("FAIL")
	v3 := f.commit("3")
	f.push("deploy-production")
	r = f.deliver("refs/heads/deploy-production", v2, v3)
	if d := f.wait(r.Deploy); d.Status != state.StatusSucceeded {
		t.Fatalf("later push: got %s (%s)", d.Status, d.Error)
	}
	waitUntil(t, 5*time.Second, "the later push's success clears the halt", func() bool {
		_, h, err := fs.Check(ctx, "web", "production", v2)
		return err == nil && h == nil
	})
}

// getPage GETs url and returns its body, failing the test on anything but 200.
func getPage(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
