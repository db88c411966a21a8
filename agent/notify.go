package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/rollout"
	"github.com/pushdeploy/pushdeploy/state"
)

// DefaultStageLimit is how long a deploy may stay in one step without progress, on top of
// the step's own timeout, before the watchdog counts its worker wedged. Progress is a new
// status (fetching, releasing, running-script, starting) or a rollout batch starting. The
// steps are bounded by their own timeouts (the script by script_timeout; a batch by
// drain_timeout, systemd's stop and start timeouts, settle and healthy_deadline, minutes
// with the defaults), except a fetch, which only the network bounds: an hour is far beyond
// any of them with the defaults, and still ends a queue that npm's deploy tools would have
// left wedged for good.
const DefaultStageLimit = time.Hour

// handoffLimit is how long a deploy may wait while its app's worker is idle: the worker
// takes it within microseconds of being woken, so one still waiting is a worker gone astray.
const handoffLimit = 30 * time.Second

// activity is what an app's worker is doing: what STATUS= says, and what the watchdog
// checks for progress. The worker sets it (newActivity, progress, batchStarted) under the
// app's mu; others read copies.
type activity struct {
	kind, app, service, sha string
	rev                     int64 // a configuration change's etcd revision, once read
	stage                   state.Status
	batch, of               int // the rollout batch under way, when one is
	revert                  bool
	since                   time.Time // the last progress
}

func newActivity(d *state.Deploy) *activity {
	return &activity{kind: d.Kind, app: d.App, service: d.Service, sha: d.SHA, stage: d.Status, since: time.Now()}
}

// progress records that d, which ap's worker runs, reached a new status.
func (a *Agent) progress(ap *app, d *state.Deploy) {
	ap.mu.Lock()
	if x := ap.act; x != nil {
		x.stage, x.sha, x.rev = d.Status, d.SHA, d.ConfigRev
		x.batch, x.of, x.revert = 0, 0, false
		x.since = time.Now()
	}
	ap.mu.Unlock()
	a.statusChanged()
}

// batchStarted is the rollout engine's Progress: a batch of an app's instances starts.
func (a *Agent) batchStarted(s rollout.Step) {
	if a.onBatch != nil {
		a.onBatch(s)
	}
	ap, ok := a.apps[s.App]
	if !ok {
		return
	}
	ap.mu.Lock()
	if x := ap.act; x != nil {
		x.batch, x.of, x.revert = s.Batch, s.Of, s.Revert
		x.since = time.Now()
	}
	ap.mu.Unlock()
	a.statusChanged()
}

// String says what the worker does, as STATUS= shows it: "deploying web abc1234def56
// (batch 2 of 3)", "restarting web", "config web rev 42: starting".
func (x *activity) String() string {
	var s string
	switch x.kind {
	case state.KindRestart:
		s = "restarting " + x.app
		if x.service != "" {
			s += " service " + x.service
		}
	case state.KindRollback:
		s = "rolling back " + x.app + " to " + abbrev.SHA(x.sha)
	case state.KindConfig:
		s = "config " + x.app
		if x.rev != 0 {
			s += " rev " + strconv.FormatInt(x.rev, 10)
		}
	default:
		s = "deploying " + x.app + " " + abbrev.SHA(x.sha)
	}
	switch {
	case x.of > 0 && x.revert:
		s += fmt.Sprintf(" (reverting: batch %d of %d)", x.batch, x.of)
	case x.of > 0:
		s += fmt.Sprintf(" (batch %d of %d)", x.batch, x.of)
	case x.stage == state.StatusQueued:
	case x.stage == state.StatusScript:
		s += ": running script"
	default:
		s += ": " + string(x.stage)
	}
	return s
}

// statusChanged tells systemd's status line to look again (coalesced by the supervisor).
func (a *Agent) statusChanged() {
	if a.sup != nil {
		a.sup.Changed()
	}
}

// status is the agent's STATUS=: "idle; 2 apps", or what each busy worker does and how
// many wait ("deploying web abc1234def56 (batch 2 of 3); 1 queued"); while stopping, what
// the drain waits for.
func (a *Agent) status() string {
	var busy []string
	queued := 0
	for _, name := range slices.Sorted(maps.Keys(a.apps)) {
		ap := a.apps[name]
		ap.mu.Lock()
		if ap.act != nil {
			busy = append(busy, ap.act.String())
		}
		if ap.pending != nil {
			queued++
		}
		if ap.config != nil {
			queued++
		}
		ap.mu.Unlock()
	}
	switch {
	case a.stopping.Load() && len(busy) == 0:
		return "stopping"
	case a.stopping.Load():
		return "stopping; waiting for " + strings.Join(busy, "; ")
	case len(busy) == 0 && queued == 0:
		return fmt.Sprintf("idle; %d %s", len(a.apps), plural(len(a.apps), "app"))
	case len(busy) == 0:
		busy = append(busy, "idle")
	}
	s := strings.Join(busy, "; ")
	if queued > 0 {
		s += fmt.Sprintf("; %d queued", queued)
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// checkQueues is the watchdog's check of the deploy queues: each app's queue lock can be
// taken (webhooks need it), and each worker is idle, has just taken a deploy, or made
// progress within its step's bound (wedged).
func (a *Agent) checkQueues(ctx context.Context) error {
	for _, name := range slices.Sorted(maps.Keys(a.apps)) {
		ap := a.apps[name]
		if err := lockCtx(ctx, &ap.mu); err != nil {
			return fmt.Errorf("queue of %s: lock held: %w", name, err)
		}
		var act activity
		busy := ap.act != nil
		if busy {
			act = *ap.act
		}
		waiting := ap.pending != nil || ap.config != nil
		since := ap.queued
		if ap.idle.After(since) {
			since = ap.idle
		}
		ap.mu.Unlock()
		now := time.Now()
		if busy {
			if err := a.wedged(ap, &act, now); err != nil {
				return err
			}
		} else if waiting && now.Sub(since) > handoffLimit {
			return fmt.Errorf("worker of %s: a deploy has waited %s for the idle worker", name, round(now.Sub(since)))
		}
	}
	return nil
}

// wedged says why the worker doing x counts as wedged at now, or nil: it has been in one
// step without progress for longer than the agent's StageLimit, plus script_timeout when
// the step is the script.
func (a *Agent) wedged(ap *app, x *activity, now time.Time) error {
	limit := a.StageLimit
	if x.stage == state.StatusScript {
		limit += ap.cfg.ScriptTimeout
	}
	if d := now.Sub(x.since); d > limit {
		return fmt.Errorf("worker of %s wedged: %s, no progress for %s (limit %s)", x.app, x, round(d), limit)
	}
	return nil
}

// round rounds d for people: to the second, or the millisecond under ten seconds.
func round(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// lockCtx locks mu, or gives up when ctx ends: a lock held for good must fail the check,
// not block it.
func lockCtx(ctx context.Context, mu *sync.Mutex) error {
	for !mu.TryLock() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}
