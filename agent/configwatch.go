package agent

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/renv"
	"github.com/pushdeploy/pushdeploy/state"
)

// watchConfig follows the app's configuration document in etcd until ctx ends and queues a
// configuration change (state.KindConfig) once the document has been quiet for the app's
// debounce and renders to something else than the environment file on disk. It starts from
// what etcd holds when it is first reachable, so a change made while the agent was down,
// or while etcd was, is rolled out too; renv.Watch re-reads after a compaction or a lost
// watch, so no change is missed, though intermediate ones may be skipped.
func (a *Agent) watchConfig(ctx context.Context, ap *app) {
	ac := ap.cfg
	log := a.component("config").Str("app", ac.Name()).
		Str("doc", ac.Config.Name+"/"+ac.Config.Env).Logger()
	from, ok := a.firstRead(ctx, ac, log)
	if !ok {
		return
	}
	a.configChanged(ap, from, log)

	changes := make(chan renv.Snapshot, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		a.renv.Watch(ctx, ac.Config.Name, ac.Config.Env, from, func(s renv.Snapshot) {
			select { // the newest state wins: only it will be rolled out
			case <-changes:
			default:
			}
			changes <- s
		}, func(err error) {
			if err == nil {
				log.Info().Msg("etcd answers again: watching configuration")
				return
			}
			log.Warn().Err(err).Str("until", "etcd answers: deploys use the cached configuration").Msg("watch configuration")
		})
	})
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var latest *renv.Snapshot
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-changes:
			latest = &s
			log.Debug().Int64("rev", s.Rev).Msg("configuration changed in etcd")
			timer.Reset(ac.Config.Debounce)
		case <-timer.C:
			if latest != nil {
				a.configChanged(ap, *latest, log)
				latest = nil
			}
		}
	}
}

// firstRead reads the document until etcd answers or ctx ends, backing off up to 5s.
func (a *Agent) firstRead(ctx context.Context, ac *config.App, log zerolog.Logger) (renv.Snapshot, bool) {
	wait := 200 * time.Millisecond
	warned := false
	for {
		leaves, rev, err := a.renv.Get(ctx, ac.Config.Name, ac.Config.Env)
		if err == nil {
			if warned {
				log.Info().Int64("rev", rev).Msg("etcd reachable again: watching configuration")
			}
			return renv.Snapshot{Leaves: leaves, Rev: rev}, true
		}
		if !warned {
			log.Warn().Err(err).Msg("read configuration: retrying until etcd answers; deploys use the cached configuration")
			warned = true
		}
		select {
		case <-ctx.Done():
			return renv.Snapshot{}, false
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// configChanged queues a configuration change when s renders to another environment file
// than the one on disk and is not the configuration already reverted as unhealthy. A
// document that cannot be rendered is queued too: the change fails, and its error, naming
// the key, is in the app's history.
func (a *Agent) configChanged(ap *app, s renv.Snapshot, log zerolog.Logger) {
	cfg, err := a.render(ap.cfg, s.Leaves, s.Rev)
	if err == nil {
		cur, rerr := os.ReadFile(a.dirs.EnvFile(ap.cfg.Name()))
		if rerr == nil && bytes.Equal(cur, cfg.Env) {
			log.Debug().Int64("rev", s.Rev).Msg("configuration renders to the environment file in place")
			return
		}
		if bad, _ := a.loadBad(ap.cfg.Name()); bad != nil && bad.Hash == cfg.Hash {
			log.Info().Int64("rev", s.Rev).Msg("configuration is the one reverted as unhealthy: not applied again")
			return
		}
	}
	cur, _ := a.store.Current(ap.cfg.Name())
	d := a.newOp(ap.cfg.Name(), state.KindConfig, cur)
	d.Note = "configuration changed in etcd (revision " + strconv.FormatInt(s.Rev, 10) + ")"
	if err := a.queueOp(ap, d); err != nil {
		log.Error().Err(err).Msg("queue configuration change")
	}
}
