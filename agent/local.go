package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// Local answers the CLI's questions straight from the data directory: the CLI uses it while
// the agent is not running, and the running agent's admin API answers with it too
// (adminBackend), from the state the agent holds open.
type Local struct {
	cfg   *config.Config
	state *state.Store
	store *release.Store
	live  bool
	gc    func(app string) (release.GCResult, error)
}

// OpenLocal opens the agent's state read-only, for use while the agent is down.
func OpenLocal(cfg *config.Config) (*Local, error) {
	st, err := state.Open(cfg.Layout().StateDB(), true, cfg.HistoryLimit)
	if err != nil {
		return nil, err
	}
	l := &Local{cfg: cfg, state: st, store: release.NewStore(cfg.Layout())}
	l.gc = func(app string) (release.GCResult, error) {
		ac, ok := cfg.Apps[app]
		if !ok {
			return release.GCResult{}, fmt.Errorf("app %q: %w", app, state.ErrNotFound)
		}
		res, err := l.store.GC(app, ac.KeepReleases)
		if err == nil && len(res.Removed) > 0 {
			if c, cerr := release.OpenCache(l.store.CacheDir(app), ac.Origin()); cerr == nil {
				err = c.Forget(res.Removed...)
			}
		}
		return res, err
	}
	return l, nil
}

// Close releases the state file.
func (l *Local) Close() error { return l.state.Close() }

// Status reports every app, or just the one named.
func (l *Local) Status(_ context.Context, only string) ([]admin.AppStatus, error) {
	var names []string
	for name := range l.cfg.Apps {
		if only == "" || only == name {
			names = append(names, name)
		}
	}
	if only != "" && len(names) == 0 {
		return nil, fmt.Errorf("app %q: %w", only, state.ErrNotFound)
	}
	sort.Strings(names)
	out := make([]admin.AppStatus, 0, len(names))
	for _, name := range names {
		st := admin.AppStatus{App: name, Repo: l.cfg.Apps[name].Repo, Agent: l.live}
		if sha, err := l.store.Current(name); err != nil {
			return nil, err
		} else if sha != "" {
			rels, err := l.store.List(name)
			if err != nil {
				return nil, err
			}
			for i := range rels {
				if rels[i].SHA == sha {
					st.Current = &rels[i]
				}
			}
		}
		st.Config = configStatus(l.cfg, name)
		hist, err := l.state.History(name, 50)
		if err != nil {
			return nil, err
		}
		for i := range hist {
			d := &hist[i]
			switch {
			case d.Status == state.StatusQueued && st.Queued == nil:
				st.Queued = d
			case !d.Status.Final() && d.Status != state.StatusQueued && st.Active == nil:
				st.Active = d
			case d.Status.Final() && st.Last == nil:
				st.Last = d
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// History returns an app's deploys, newest first.
func (l *Local) History(_ context.Context, app string, limit int) ([]state.Deploy, error) {
	if _, ok := l.cfg.Apps[app]; !ok {
		return nil, fmt.Errorf("app %q: %w", app, state.ErrNotFound)
	}
	return l.state.History(app, limit)
}

// Deploy returns one deploy and its log.
func (l *Local) Deploy(_ context.Context, app, id string) (*state.Deploy, []byte, error) {
	d, err := l.state.Get(app, id)
	if err != nil {
		return nil, nil, err
	}
	log, err := os.ReadFile(l.cfg.Layout().DeployLog(app, id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("read deploy log: %w", err)
	}
	return d, log, nil
}

// GC applies an app's release retention.
func (l *Local) GC(_ context.Context, app string) (release.GCResult, error) { return l.gc(app) }

// adminBackend is what the admin API serves: what Local reads, from the running agent's
// open state, and the agent's queue for restarts and rollbacks.
type adminBackend struct {
	*Local
	a *Agent
}

var _ admin.Backend = adminBackend{}

// Restart queues a rolling restart (Agent.Restart).
func (b adminBackend) Restart(_ context.Context, app, service string) (*state.Deploy, error) {
	return b.a.Restart(app, service)
}

// Follow follows a deploy's log as it is written (Agent.follow).
func (b adminBackend) Follow(ctx context.Context, app, id string, from int64, emit func([]byte, int64) error) (*state.Deploy, error) {
	return b.a.follow(ctx, app, id, from, emit)
}

// DeployBranch queues a deploy of a branch's tip (Agent.DeployBranch).
func (b adminBackend) DeployBranch(ctx context.Context, app string, req admin.DeployRequest) (*state.Deploy, error) {
	return b.a.DeployBranch(ctx, app, req)
}

// Rollback queues a rollback (Agent.Rollback).
func (b adminBackend) Rollback(_ context.Context, app, sha string) (*state.Deploy, error) {
	return b.a.Rollback(app, sha)
}
