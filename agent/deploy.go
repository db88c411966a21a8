package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// errStale marks a deploy that must not happen because the branch has moved on.
var errStale = errors.New("stale")

type staleError struct{ reason string }

func (e *staleError) Error() string { return e.reason }
func (e *staleError) Unwrap() error { return errStale }

// runDeploy takes one deploy from queued to a final status, recording every step.
func (a *Agent) runDeploy(ctx context.Context, ap *app, d *state.Deploy) {
	log, closeLog := a.deployLogger(d)
	defer closeLog()
	d.Started = time.Now().UTC()
	set := func(s state.Status) {
		d.Status = s
		a.progress(ap, d)
		if err := a.state.Save(d); err != nil {
			log.Error().Err(err).Msg("record deploy status")
		}
		log.Info().Str("status", string(s)).Msg("deploy status")
		a.registryChanged()
	}
	log.Info().Str("kind", d.Kind).Str("sha", d.SHA).Str("branch", d.Branch).Str("delivery", d.Delivery).Msg("deploy started")
	gh := a.github(ap, d)
	a.reportStart(gh, d)
	a.announceStart(d)
	// Every way out reports the deploy's end; GitHub is told in the background.
	defer a.reportEnd(gh, d)
	defer a.announceEnd(d)
	// Once the final status is recorded, the fleet's next host may go.
	defer a.releaseSlot(ap, d)
	var err error
	switch d.Kind {
	case state.KindRestart:
		err = a.restartPipeline(ctx, ap, d, set, log)
	case state.KindRollback:
		err = a.rollbackPipeline(ctx, ap, d, set, log)
	case state.KindConfig:
		err = a.configPipeline(ctx, ap, d, set, log)
	default:
		err = a.pipeline(ctx, ap, d, set, log)
	}
	d.Finished = time.Now().UTC()
	var stale *staleError
	var ended *endedError
	switch {
	case err == nil:
		set(state.StatusSucceeded)
		log.Info().Int64("took_ms", d.Finished.Sub(d.Started).Milliseconds()).Msg("deploy succeeded")
	case errors.As(err, &stale):
		d.Note = stale.reason
		set(state.StatusStale)
		log.Warn().Str("reason", stale.reason).Msg("deploy skipped: stale")
	case errors.As(err, &ended):
		d.Note = ended.reason
		set(ended.status)
		log.Warn().Str("status", string(ended.status)).Str("reason", ended.reason).Msg("deploy not run")
	case ctx.Err() != nil || errors.Is(err, errShutdown):
		// The agent is stopping: current was not switched, so the deploy can simply run again
		// at the next start.
		d.Finished = time.Time{}
		d.Note = "interrupted by agent shutdown; resumes at next start"
		set(state.StatusQueued)
		log.Warn().Msg("deploy interrupted by shutdown")
		return
	default:
		d.Error = err.Error()
		set(state.StatusFailed)
		log.Error().Err(err).Msg("deploy failed")
	}
	a.metrics.deploys.WithLabelValues(d.App, string(d.Status)).Inc()
	a.metrics.duration.WithLabelValues(d.App, string(d.Status)).Observe(d.Finished.Sub(d.Started).Seconds())
	a.pruneHistory(d.App)
}

// pipeline is the deploy itself. Nothing it does before Activate is visible to the running
// release; any error before then leaves current where it was.
func (a *Agent) pipeline(ctx context.Context, ap *app, d *state.Deploy, set func(state.Status), log zerolog.Logger) error {
	if err := a.acquire(ctx, ap, d, set, log); err != nil {
		return err
	}
	ap.op.Lock()
	defer ap.op.Unlock()
	set(state.StatusFetching)
	cache, err := a.cache(ap)
	if err != nil {
		return err
	}
	// A webhook can arrive late or out of order; deploying it then would roll the host back.
	tip, err := cache.Tip(ctx, d.Branch)
	if errors.Is(err, release.ErrBranchNotFound) {
		return &staleError{fmt.Sprintf("branch %s was deleted after the push", d.Branch)}
	}
	if err != nil {
		return err
	}
	if tip != d.SHA {
		return &staleError{fmt.Sprintf("branch %s has moved on to %s", d.Branch, abbrev.SHA(tip))}
	}
	start := time.Now()
	res, err := cache.Fetch(ctx, d.SHA, d.Branch)
	if errors.Is(err, release.ErrNotAtTip) {
		return &staleError{err.Error()}
	}
	if err != nil {
		return err
	}
	d.FetchBytes = res.PackBytes
	log.Info().Int64("bytes", res.PackBytes).Bool("fallback", res.Fallback).Bool("cached", res.AlreadyHad).
		Int64("took_ms", time.Since(start).Milliseconds()).Msg("fetched")

	set(state.StatusReleasing)
	start = time.Now()
	rel, err := a.store.Build(ctx, d.App, cache, d.SHA, release.Info{Branch: d.Branch, Deploy: d.ID})
	if err != nil {
		return err
	}
	log.Info().Str("dir", rel.Dir).Int64("took_ms", time.Since(start).Milliseconds()).Msg("release laid out")
	if d.Previous, err = a.store.Current(d.App); err != nil {
		return err
	}
	env, err := a.prepareEnv(ctx, ap, d, log)
	if err != nil {
		return err
	}
	if len(ap.cfg.Script) > 0 {
		set(state.StatusScript)
		run := scriptRun{
			Argv:    ap.cfg.Script,
			Args:    []string{ap.cfg.Repo, d.Branch, d.SHA},
			Dir:     rel.Dir,
			Timeout: ap.cfg.ScriptTimeout,
			Redact:  ap.secrets.String,
			Env: []string{
				"PUSHDEPLOY_APP=" + d.App,
				"PUSHDEPLOY_SHA=" + d.SHA,
				"PUSHDEPLOY_PREVIOUS_SHA=" + d.Previous,
				"PUSHDEPLOY_BRANCH=" + d.Branch,
				"PUSHDEPLOY_RELEASE_DIR=" + rel.Dir,
				"PUSHDEPLOY_DEPLOY_ID=" + d.ID,
			},
		}
		if env.path != "" {
			run.Env = append(run.Env, "PUSHDEPLOY_ENV_FILE="+env.path)
		}
		// Recorded durably before the script does anything: if the agent is killed, its
		// next start ends the script (endLeftScript) before it runs the deploy again.
		run.Started = func(pgid int) {
			d.ScriptPGID = pgid
			if err := a.state.Save(d); err != nil {
				log.Error().Err(err).Msg("record deploy script")
			}
		}
		err := run.run(ctx, log)
		d.ScriptPGID = 0
		if err != nil {
			return env.fail(err)
		}
	}
	if err := a.goLive(ctx, d, rel, env, set, log); err != nil {
		return err
	}
	// Retention is housekeeping: a failure is logged, it does not fail a deploy that is live.
	if _, err := a.gc(ap, cache, log); err != nil {
		log.Warn().Err(err).Msg("release gc")
	}
	return nil
}

// goLive rolls rel's services out (a deploy's or a rollback's), then makes rel current and
// marks it good, and caches the configuration it went live with. On failure the previous
// environment file is back for the release that keeps running.
func (a *Agent) goLive(ctx context.Context, d *state.Deploy, rel release.Release, env *preparedEnv, set func(state.Status), log zerolog.Logger) error {
	set(state.StatusStarting)
	if err := a.startServices(ctx, d, rel, env.putBack, log); err != nil {
		return env.fail(err)
	}
	if _, err := a.store.Activate(d.App, d.SHA); err != nil {
		return env.fail(err)
	}
	if err := a.store.SetMark(d.App, d.SHA, release.Good, ""); err != nil {
		return err
	}
	log.Info().Str("previous", abbrev.SHA(d.Previous)).Msg("current switched")
	env.succeeded(log)
	return nil
}

// cache opens the app's git cache once; the caller holds ap.op.
func (a *Agent) cache(ap *app) (*release.Cache, error) {
	if ap.cache == nil {
		c, err := release.OpenCache(a.store.CacheDir(ap.cfg.Name()), ap.cfg.Origin())
		if err != nil {
			return nil, err
		}
		ap.cache = c
	}
	return ap.cache, nil
}

// gc applies the app's retention; the caller holds ap.op.
func (a *Agent) gc(ap *app, cache *release.Cache, log zerolog.Logger) (release.GCResult, error) {
	res, err := a.store.GC(ap.cfg.Name(), ap.cfg.KeepReleases)
	if len(res.Removed) > 0 {
		if ferr := cache.Forget(res.Removed...); ferr != nil && err == nil {
			err = ferr
		}
		log.Info().Strs("removed", res.Removed).Int("objects", res.Objects).Int64("bytes", res.Bytes).Msg("old releases removed")
	}
	return res, err
}

// GC applies an app's retention now, between deploys.
func (a *Agent) GC(app string) (release.GCResult, error) {
	ap, ok := a.apps[app]
	if !ok {
		return release.GCResult{}, fmt.Errorf("app %q: %w", app, state.ErrNotFound)
	}
	ap.op.Lock()
	defer ap.op.Unlock()
	cache, err := a.cache(ap)
	if err != nil {
		return release.GCResult{}, err
	}
	return a.gc(ap, cache, a.log.With().Str("app", app).Logger())
}

// deployLogger returns a logger that writes to the agent's log and to the deploy's own log
// file, every line carrying the deploy id.
func (a *Agent) deployLogger(d *state.Deploy) (zerolog.Logger, func()) {
	base := a.log.With().Str("app", d.App).Str("deploy", d.ID).Logger()
	p := a.dirs.DeployLog(d.App, d.ID)
	if err := a.dirs.MkdirAll(filepath.Dir(p)); err != nil {
		base.Error().Err(err).Msg("create deploy log")
		return base, func() {}
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, datadir.ModePrivateFile)
	if err != nil {
		base.Error().Err(err).Msg("create deploy log")
		return base, func() {}
	}
	// Followers of the log (status page, `pushdeploy logs -f`) hear of every line.
	w, done := a.logWriter(d, f)
	log := newLogger(zerolog.MultiLevelWriter(a.out, w), a.log.GetLevel()).
		Str("component", "deploy").Str("app", d.App).Str("deploy", d.ID).Logger()
	return log, func() { f.Sync(); f.Close(); done() }
}

func (a *Agent) pruneHistory(app string) {
	ids, err := a.state.Prune(app)
	if err != nil {
		a.log.Warn().Err(err).Msg("prune history")
		return
	}
	for _, id := range ids {
		os.Remove(a.dirs.DeployLog(app, id))
	}
}
