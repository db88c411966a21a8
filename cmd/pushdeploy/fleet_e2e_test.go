package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/state"
)

// TestFleet_50Agents runs 50 real agents on this machine against one etcd: 49 deploy a
// push, never more than max_parallel at once by their own records, the canary first; a
// commit that fails on the canary halts the 48 others within 0.5s, and none deploys it; an
// agent killed while it holds a slot frees it within its lease TTL; the 50th agent,
// started after the push, catches up on its own.
func TestFleet_50Agents(t *testing.T) {
	const hosts, parallel, ttl = 50, 5, 2 * time.Second
	bin := binary(t)
	began := time.Now()
	r := newFleetRig(t, bin, rigOptions{hosts: hosts, maxParallel: "5", canary: 1, sleep: "0.2", leaseTTL: ttl})
	late := r.agents[hosts-1]
	r.start(r.agents[:hosts-1]...)
	t.Logf("%d agents started in %v", hosts-1, time.Since(began).Round(time.Millisecond))
	live := hosts - 1

	// 1. A push: the canary first, then at most 5 hosts at once.
	v1 := r.commit("1", false)
	pushed := r.push(strings.Repeat("0", 40), v1)
	r.waitFleet(30*time.Second, "49 hosts on v1", func(s fleet.Summary) bool { return s.Target == v1 && s.OnTarget == live && s.Deploying == 0 })
	t.Logf("v1: push to %d hosts converged in %v", live, time.Since(pushed).Round(time.Millisecond))
	recs := r.records(v1)
	checkRollout(t, recs, live, parallel)

	// 2. A commit that fails on the canary: every other host gives up within 0.5s.
	v2 := r.commit("2", true)
	r.push(v1, v2)
	r.waitFleet(20*time.Second, "v2 failed on the canary and halted everywhere else", func(s fleet.Summary) bool {
		return s.Target == v2 && s.Failed+s.Halted == live
	})
	recs = r.records(v2)
	var canary state.Deploy
	for host, d := range recs {
		if d.Status == state.StatusFailed {
			if canary.ID != "" {
				t.Fatalf("two hosts deployed the failing commit: %s and %s", canary.Note, host)
			}
			canary = d
			canary.Note = host
		}
	}
	var slowest time.Duration
	for host, d := range recs {
		if d.Status == state.StatusFailed {
			continue
		}
		if d.Status != state.StatusHalted || !strings.Contains(d.Note, "failed on "+canary.Note) || d.FetchBytes != 0 {
			t.Errorf("%s: got %s (%s), want halted by %s before fetching", host, d.Status, d.Note, canary.Note)
		}
		slowest = max(slowest, d.Finished.Sub(canary.Finished))
	}
	t.Logf("v2: halt reached the last of %d waiting hosts %v after the canary's failure", live-1, slowest.Round(time.Millisecond))
	if slowest > 500*time.Millisecond {
		t.Errorf("halt propagation: %v, want < 500ms", slowest)
	}
	r.waitFleet(5*time.Second, "every host still on v1", func(s fleet.Summary) bool {
		for _, l := range s.Lines {
			if l.SHA != v1 {
				return false
			}
		}
		return len(s.Lines) == live
	})

	// 3. A later push; an agent holding a slot is killed: its slot is free within its lease
	// TTL, the others go on. Back up, it finishes its deploy.
	v3 := r.commit("3", false)
	r.push(v2, v3)
	var victim *rigAgent
	deadline := time.Now().Add(20 * time.Second)
	for victim == nil && time.Now().Before(deadline) {
		// The canary holds the only slot until it succeeds; then up to 5 hosts hold one.
		if s := r.slots(); len(s) >= 3 {
			victim = r.agent(s[1])
		}
		time.Sleep(5 * time.Millisecond)
	}
	if victim == nil {
		t.Fatal("no second host ever held a slot for v3")
	}
	victim.kill()
	killed := time.Now()
	for hasSlot(r.slots(), victim.host) && time.Since(killed) < 2*ttl {
		time.Sleep(20 * time.Millisecond)
	}
	freed := time.Since(killed)
	t.Logf("v3: %s killed holding a slot; the slot was free %v later (lease TTL %v)", victim.host, freed.Round(time.Millisecond), ttl)
	// etcd expires leases in a sweep every 500ms.
	if hasSlot(r.slots(), victim.host) || freed > ttl+600*time.Millisecond {
		t.Errorf("slot of the killed agent freed after %v, want within the lease TTL %v (+ etcd's 500ms sweep)", freed, ttl)
	}
	r.waitFleet(30*time.Second, "the 48 others on v3", func(s fleet.Summary) bool { return s.OnTarget == live-1 && s.Unreachable == 1 })
	checkRollout(t, r.records(v3), live-1, parallel)
	r.start(victim)
	if d := r.waitRecord(victim, v3); d.Status != state.StatusSucceeded {
		t.Errorf("%s after restart: got %s (%s), want its deploy resumed and succeeded", victim.host, d.Status, d.Error)
	}

	// 4. The agent that was down during every push catches up when it starts.
	r.start(late)
	d := r.waitRecord(late, v3)
	if d.Kind != state.KindReconcile || d.Status != state.StatusSucceeded {
		t.Errorf("late agent: got %s %s (%s), want a reconcile that succeeded", d.Kind, d.Status, d.Error)
	}
	t.Logf("late agent: started → caught up on v3 in %v", d.Finished.Sub(late.started).Round(time.Millisecond))
	r.waitFleet(10*time.Second, "all 50 on v3", func(s fleet.Summary) bool { return s.Converged() && s.Hosts == hosts && s.Target == v3 })
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// checkRollout checks n hosts' records of one push: all succeeded, the canary (the first
// to start) finished before any other started, and at most parallel ran at once.
func checkRollout(t *testing.T, recs map[string]state.Deploy, n, parallel int) {
	t.Helper()
	if len(recs) != n {
		t.Fatalf("records of %d hosts, want %d", len(recs), n)
	}
	var first state.Deploy
	for host, d := range recs {
		if d.Status != state.StatusSucceeded {
			t.Errorf("%s: got %s (%s), want succeeded", host, d.Status, d.Error)
		}
		if first.ID == "" || d.Started.Before(first.Started) {
			first = d
		}
	}
	for host, d := range recs {
		if d.ID != first.ID && d.Started.Before(first.Finished) {
			t.Errorf("%s started at %s, before the canary finished at %s", host, d.Started.Format(time.StampMilli), first.Finished.Format(time.StampMilli))
		}
	}
	most := mostAtOnce(recs)
	t.Logf("at most %d of %d hosts deployed at once (max_parallel %d)", most, n, parallel)
	if most > parallel {
		t.Errorf("%d hosts deployed at once, want at most %d", most, parallel)
	}
}

func hasSlot(slots []string, host string) bool {
	for _, s := range slots {
		if s == host {
			return true
		}
	}
	return false
}

// waitRecord waits for a's deploy of sha to be final.
func (r *fleetRig) waitRecord(a *rigAgent, sha string) state.Deploy {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if d, ok := r.records(sha)[a.host]; ok && d.Status.Final() {
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("%s: no final deploy of %.12s in 30s; log:\n%s", a.host, sha, a.logTail())
	return state.Deploy{}
}
