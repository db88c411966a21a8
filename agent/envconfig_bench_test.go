package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// BenchmarkAgent_configChange measures what a configuration change costs on a host running
// 2 instances of the demo's hello server (HTTP check every 100ms, min_healthy_time 300ms,
// one instance per batch, debounce 200ms), against a real systemd user manager and etcd:
//
//   - set-to-first-ms: `env set` (one etcd transaction) → the first instance answering with
//     the new value (debounce, one read, the environment file, a restart);
//   - rollout-ms: the same set → the config record succeeded (every batch healthy);
//   - etcd-reads/deploy: round trips a push deploy makes to etcd (its own, during it);
//   - etcd-ops/change: every round trip the agent made per change (watch, reads, progress).
//
// make bench runs it (scripts/bench.sh).
func BenchmarkAgent_configChange(b *testing.B) {
	sd := testenv.StartSystemd(b)
	e := testenv.StartEtcd(b)
	store := configStore(b, e)
	setConfig(b, store, "greeting", `"v0"`)
	hello := testenv.HelloBinary(b)
	port := testenv.FreePorts(b, 2)
	f := newFixture(b, func(c *config.Config) {
		onSystemd(b, c, sd, 300*time.Millisecond)
		c.Etcd = &config.Etcd{Endpoints: e.Endpoints}
		c.Apps["web"].Config = &config.AppEnv{Debounce: 200 * time.Millisecond}
	})
	f.repo.Write("VERSION", "1\n", 0o644)
	f.repo.Write("bin/hello", hello, 0o755)
	f.repo.Write("service.json", fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": %d,
		"health": {"http": "/health", "timeout": "200ms", "interval": "100ms", "min_healthy_time": "300ms", "healthy_deadline": "5s"}}}}`, port), 0o644)
	sha := f.repo.Commit("version 1")
	f.pushAndDeploy(sha)
	// Let the watcher's start-up settle, then count one push deploy's round trips.
	time.Sleep(500 * time.Millisecond)
	allOps := func() float64 {
		n := 0.0
		for _, op := range []string{"get", "txn", "watch", "progress", "delete"} {
			n += testutil.ToFloat64(f.agent.metrics.etcd.WithLabelValues(op))
		}
		return n
	}
	gets := etcdGets(f.agent)
	f.repo.Write("VERSION", "2\n", 0o644)
	d := f.pushAndDeploy(f.repo.Commit("version 2"))
	if d.Status != state.StatusSucceeded {
		b.Fatalf("deploy: %s %s", d.Status, d.Error)
	}
	reads := etcdGets(f.agent) - gets

	last := d.ID
	var first, rollout time.Duration
	before := allOps()
	b.ResetTimer()
	for i := range b.N {
		want := fmt.Sprintf("hello from version 2 (greeting: v%d)", i+1)
		start := time.Now()
		setConfig(b, store, "greeting", fmt.Sprintf(`"v%d"`, i+1))
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if get(fmt.Sprintf("http://127.0.0.1:%d/", port)) == want || get(fmt.Sprintf("http://127.0.0.1:%d/", port+1)) == want {
				first += time.Since(start)
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("no instance answered %q in 30s", want)
			}
		}
		c := f.waitKind(state.KindConfig, last)
		rollout += c.Finished.Sub(start)
		if c.Status != state.StatusSucceeded {
			b.Fatalf("config change %d: %s %s", i+1, c.Status, c.Error)
		}
		last = c.ID
	}
	b.StopTimer()
	b.ReportMetric(reads, "etcd-reads/deploy")
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "set-to-first-ms")
	b.ReportMetric(float64(rollout.Milliseconds())/float64(b.N), "rollout-ms")
	b.ReportMetric((allOps()-before)/float64(b.N), "etcd-ops/change")
}
