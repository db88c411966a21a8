package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/rollout"
	"github.com/pushdeploy/pushdeploy/state"
)

// preparedEnv is the environment file a deploy or rollback rolls out with its release.
type preparedEnv struct {
	app  string
	path string // "" when the app has no configuration in etcd
	cfg  *appConfig
	a    *Agent

	once    sync.Once
	undo    func() error
	undoErr error
}

// prepareEnv writes the configuration a deploy rolls out (configForDeploy) to the app's
// environment file before its units are generated and started. An app without etcd gets
// an empty preparedEnv whose methods do nothing.
func (a *Agent) prepareEnv(ctx context.Context, ap *app, d *state.Deploy, log zerolog.Logger) (*preparedEnv, error) {
	p := &preparedEnv{app: ap.cfg.Name(), a: a}
	if a.renv == nil || ap.cfg.Config == nil {
		return p, nil
	}
	cfg, err := a.configForDeploy(ctx, ap, log)
	if err != nil {
		return nil, err
	}
	undo, changed, err := a.writeEnv(ap.cfg.Name(), cfg)
	if err != nil {
		return nil, err
	}
	p.path, p.cfg, p.undo = a.dirs.EnvFile(ap.cfg.Name()), cfg, undo
	d.ConfigRev, d.ConfigSource = cfg.Rev, cfg.Source
	log.Info().Int64("rev", cfg.Rev).Str("source", cfg.Source).Bool("changed", changed).
		Int("keys", len(cfg.Leaves)).Msg("configuration")
	return p, nil
}

// restore puts the previous environment file back, once, however often it is called: by
// the installer before it restarts the previous release, and by a deploy that fails.
func (p *preparedEnv) restore() error {
	if p.undo == nil {
		return nil
	}
	p.once.Do(func() { p.undoErr = p.undo() })
	return p.undoErr
}

// putBack is restore for the rollout engine's Plan.PutBack.
func (p *preparedEnv) putBack(context.Context) error { return p.restore() }

// fail is the error of a deploy that failed after the environment file was written: the
// previous file is back, for the release that keeps running.
func (p *preparedEnv) fail(err error) error {
	if rerr := p.restore(); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// succeeded caches the configuration the deploy rolled out as the last good one.
func (p *preparedEnv) succeeded(log zerolog.Logger) {
	if p.cfg == nil {
		return
	}
	if err := p.a.saveGood(p.app, p.cfg); err != nil {
		log.Warn().Err(err).Msg("cache configuration")
	}
}

// configPipeline rolls out a configuration changed in etcd: it renders the document again
// (a change queued a while ago rolls out what etcd holds now), writes the environment file
// and restarts the current release's instances batch after batch, each batch
// health-checked as in a deploy. When a batch fails, the previous environment file comes
// back and every batch restarted so far is restarted on it, the failed one first, each
// health-checked; the configuration is remembered as bad and not applied again, by a
// config change or a deploy, until etcd holds another one.
func (a *Agent) configPipeline(ctx context.Context, ap *app, d *state.Deploy, set func(state.Status), log zerolog.Logger) error {
	ap.op.Lock()
	defer ap.op.Unlock()
	if a.renv == nil || ap.cfg.Config == nil {
		return fmt.Errorf("roll out configuration of %s: the agent has no etcd section: %w", d.App, admin.ErrNothingToDo)
	}
	ac := ap.cfg
	cfg, err := a.fetchConfig(ctx, ac)
	if err != nil {
		return fmt.Errorf("roll out configuration: %w; the environment file is unchanged", err)
	}
	d.ConfigRev, d.ConfigSource = cfg.Rev, cfg.Source
	if bad, err := a.loadBad(ac.Name()); err != nil {
		return err
	} else if bad != nil && bad.Hash == cfg.Hash {
		d.Note = fmt.Sprintf("etcd revision %d holds the configuration reverted as unhealthy (revision %d); not applied again", cfg.Rev, bad.Rev)
		log.Warn().Int64("rev", cfg.Rev).Msg("configuration was reverted as unhealthy: not applied again")
		return nil
	}
	cur, err := a.store.Current(d.App)
	if err != nil {
		return err
	}
	d.SHA, d.Previous = cur, cur
	undo, changed, err := a.writeEnv(ac.Name(), cfg)
	if err == nil && changed && cur == "" {
		d.Note = "environment file written; no release yet"
		return a.saveGood(ac.Name(), cfg)
	}
	if err != nil {
		return err
	}
	if !changed {
		d.Note = "environment file already up to date"
		log.Info().Int64("rev", cfg.Rev).Msg("configuration unchanged: nothing to restart")
		return a.saveGood(ac.Name(), cfg)
	}
	log.Info().Int64("rev", cfg.Rev).Int("keys", len(cfg.Leaves)).Msg("environment file written")
	eng, plan, err := a.restartPlan(ctx, d, true, log)
	if errors.Is(err, admin.ErrNothingToDo) {
		d.Note = "environment file written; no services running to restart"
		return a.saveGood(ac.Name(), cfg)
	}
	if err != nil {
		return errors.Join(err, undo())
	}
	// A failed batch takes the rollout engine's one revert path: the previous file back,
	// then every batch restarted so far restarted on it, the failed one first, each checked.
	plan.PutBack = func(context.Context) error {
		log.Warn().Int64("rev", cfg.Rev).Msg("configuration unhealthy: putting the previous one back")
		return undo()
	}
	set(state.StatusStarting)
	log.Info().Int("batches", len(plan.Batches)).Msg("restart planned")
	err = eng.Restart(ctx, plan)
	if err == nil {
		return a.saveGood(ac.Name(), cfg)
	}
	if _, halted := errors.AsType[*rollout.HaltedError](err); halted {
		return fmt.Errorf("configuration at etcd revision %d: %w", cfg.Rev, err)
	}
	// Put back: the configuration is remembered as bad and not applied again.
	cause := err
	if re, ok := errors.AsType[*rollout.RevertedError](err); ok {
		cause = re.Cause
		err = fmt.Errorf("configuration at etcd revision %d reverted: previous environment file put back, %d batch(es) restarted on it and healthy; cause: %w", cfg.Rev, re.Batches, re.Cause)
	} else {
		err = fmt.Errorf("configuration at etcd revision %d: %w", cfg.Rev, err)
	}
	if serr := a.saveBad(d.App, cfg, cause.Error()); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}
