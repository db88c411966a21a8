package agent

import (
	"context"
	"sync"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/internal/redact"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// app is one configured app and its deploy queue. The queue holds at most one waiting
// deploy: a newer push replaces it (newest wins), because deploying a commit that is about
// to be replaced only makes the host go through an extra restart.
type app struct {
	cfg *config.App

	mu      sync.Mutex
	pending *state.Deploy
	config  *state.Deploy // a configuration change waiting; runs after pending
	act     *activity     // what the worker is doing; nil while it is idle
	queued  time.Time     // when pending or config was last set
	idle    time.Time     // when the worker last finished one
	wake    chan struct{}
	// catchUp asks the catch-up loop to look at the branch now, not at its next interval.
	catchUp chan struct{}

	// op is held while anything changes the app's releases: a deploy or a gc.
	op    sync.Mutex
	cache *release.Cache

	gh githubAPI // nil: deploys are not reported to GitHub

	slot *fleet.Slot // the fleet slot of the deploy under way, if it took one (worker only)

	// secrets are the app's configuration secrets the agent has read, masked in the app's
	// output it quotes: its journal, health answers and script output.
	secrets redact.Set
}

func newApp(cfg *config.App) *app {
	return &app{cfg: cfg, wake: make(chan struct{}, 1), catchUp: make(chan struct{}, 1)}
}

// enqueue makes d the app's next deploy, superseding the one waiting, if any. A
// configuration change waits in a slot of its own, after the deploy: it supersedes only an
// older configuration change, and a deploy never supersedes it (if the deploy rolled the
// same configuration out, the change finds nothing left to do, at the cost of one read).
func (a *Agent) enqueue(ap *app, d *state.Deploy) {
	ap.mu.Lock()
	if d.Kind == state.KindConfig {
		old := ap.config
		ap.config, ap.queued = d, time.Now()
		ap.mu.Unlock()
		if old != nil {
			a.supersede(old, d)
		}
		a.wakeUp(ap)
		return
	}
	if old := ap.pending; old != nil && d.Kind == state.KindRestart && old.Kind != state.KindRestart {
		// The deploy or rollback waiting restarts every instance anyway: it stays.
		ap.mu.Unlock()
		d.Status = state.StatusSuperseded
		d.Note = "not needed: " + old.ID + " (" + old.Kind + " " + abbrev.SHA(old.SHA) + "), queued before it, restarts every instance"
		d.Finished = time.Now().UTC()
		if err := a.state.Save(d); err != nil {
			a.log.Error().Err(err).Str("deploy", d.ID).Msg("record superseded restart")
		}
		return
	}
	a.reportQueued(a.github(ap, d), d)
	old := ap.pending
	ap.pending, ap.queued = d, time.Now()
	ap.mu.Unlock()
	if old != nil {
		a.reportEnd(a.github(ap, old), a.supersede(old, d))
	}
	a.wakeUp(ap)
}

// supersede records that old, which was waiting, will not run because d replaces it.
func (a *Agent) supersede(old, d *state.Deploy) *state.Deploy {
	old.Status = state.StatusSuperseded
	old.Note = "superseded by " + d.ID + " (" + d.Kind + " " + abbrev.SHA(d.SHA) + ")"
	old.Finished = time.Now().UTC()
	if err := a.state.Save(old); err != nil {
		a.log.Error().Err(err).Str("deploy", old.ID).Msg("record superseded deploy")
	}
	a.log.Info().Str("app", old.App).Str("deploy", old.ID).Str("by", d.ID).Msg("deploy superseded")
	a.view.logs.Notify(old.ID) // its followers learn that it is final
	a.metrics.deploys.WithLabelValues(old.App, string(state.StatusSuperseded)).Inc()
	return old
}

// wakeUp tells the app's worker, and the status systemd shows, that the queue changed.
func (a *Agent) wakeUp(ap *app) {
	select {
	case ap.wake <- struct{}{}:
	default:
	}
	a.statusChanged()
}

// work runs the app's deploys one at a time until stop is cancelled. Deploys run under
// deployCtx, which outlives stop by the shutdown grace period so that a deploy under way can
// finish.
func (a *Agent) work(stop, deployCtx context.Context, ap *app) {
	for {
		select {
		case <-stop.Done():
			return
		case <-ap.wake:
		}
		for stop.Err() == nil {
			ap.mu.Lock()
			d := ap.pending
			ap.pending = nil
			if d == nil {
				d, ap.config = ap.config, nil
			}
			if d != nil {
				ap.act = newActivity(d)
			}
			ap.mu.Unlock()
			if d == nil {
				break
			}
			a.statusChanged()
			a.runDeploy(deployCtx, ap, d)
			ap.mu.Lock()
			ap.act, ap.idle = nil, time.Now()
			ap.mu.Unlock()
			a.statusChanged()
			if d.Status == state.StatusStale {
				// The branch has moved on to a commit whose webhook may never come (it came
				// while the agent was down, or was lost): catch up now, not in minutes.
				select {
				case ap.catchUp <- struct{}{}:
				default:
				}
			}
		}
	}
}
