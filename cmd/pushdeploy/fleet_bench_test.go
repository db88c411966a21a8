package main

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/state"
)

// BenchmarkFleet_50Agents measures 50 real agents on one etcd (make bench): push →
// converged for max_parallel 1, 5 and 25% against the sum of the hosts' deploy times; how
// fast a canary's failure halts the hosts waiting; how soon a host that was down catches up;
// etcd requests per host per deploy and per idle minute. Run it once: -benchtime 1x.
func BenchmarkFleet_50Agents(b *testing.B) {
	const hosts = 50
	o := rigOptions{hosts: hosts, sleep: "0.2", leaseTTL: fleet.DefaultLeaseTTL}
	r := newFleetRig(b, binary(b), o)
	prev := strings.Repeat("0", 40)
	for b.Loop() {
		for i, mp := range []string{"1", "5", "25%"} {
			o.maxParallel = mp
			if mp == "25%" {
				o.canary = 1
			}
			r.configure(o)
			for _, a := range r.agents {
				a.stop()
			}
			r.start(r.agents...)
			time.Sleep(3 * time.Second) // what agents do at start is not the deploy's
			before := r.etcdRequests()
			sha := r.commit(mp, false)
			pushed := r.push(prev, sha)
			r.waitFleet(3*time.Minute, "converged", func(s fleet.Summary) bool { return s.Target == sha && s.Converged() && s.Hosts == hosts })
			took := time.Since(pushed)
			prev = sha
			var sum time.Duration
			for _, d := range r.records(sha) {
				sum += d.Finished.Sub(d.Started)
			}
			label := []string{"mp1", "mp5", "mp25pct"}[i]
			b.ReportMetric(took.Seconds(), "converge-"+label+"-s")
			b.ReportMetric(sum.Seconds(), "deploys-sum-"+label+"-s")
			if mp == "25%" {
				n, ops := r.requestsSince(before, hosts)
				b.Logf("etcd requests per host while the push rolled out: %.1f (%s)", n, ops)
				b.ReportMetric(n, "etcd-req/host/deploy")
			}
		}

		// A failing commit: the canary fails, the 49 others give up.
		bad := r.commit("bad", true)
		r.push(prev, bad)
		r.waitFleet(time.Minute, "halted", func(s fleet.Summary) bool { return s.Target == bad && s.Failed+s.Halted == hosts })
		var failed time.Time
		var lags []time.Duration
		recs := r.records(bad)
		for _, d := range recs {
			if d.Status == state.StatusFailed {
				failed = d.Finished
			}
		}
		for _, d := range recs {
			if d.Status == state.StatusHalted {
				lags = append(lags, d.Finished.Sub(failed))
			}
		}
		sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
		b.ReportMetric(float64(lags[len(lags)/2].Milliseconds()), "halt-p50-ms")
		b.ReportMetric(float64(lags[min(len(lags)-1, len(lags)*99/100)].Milliseconds()), "halt-p99-ms")

		// A host down during a push catches up when it starts.
		down := r.agents[hosts-1]
		down.stop()
		good := r.commit("good", false)
		r.push(bad, good)
		r.waitFleet(time.Minute, "the others converged", func(s fleet.Summary) bool { return s.Target == good && s.OnTarget == hosts-1 && s.Deploying == 0 })
		r.start(down)
		d := r.waitRecord(down, good)
		b.ReportMetric(d.Finished.Sub(down.started).Seconds()*1000, "catchup-ms")

		// Idle: leases kept alive, configuration watches probed.
		time.Sleep(2 * time.Second)
		before := r.etcdRequests()
		const idle = 30 * time.Second
		time.Sleep(idle)
		n, ops := r.requestsSince(before, hosts)
		b.Logf("etcd requests per host in %v idle: %.1f (%s)", idle, n, ops)
		b.ReportMetric(n*float64(time.Minute/idle), "etcd-req/host/idle-min")
	}
}
