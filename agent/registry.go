package agent

import (
	"context"
	"time"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/state"
)

// registryEntries are the host's entries in the fleet's registry, one per environment: per
// app, the current release and its mark, the deploy under way (or waiting) and its step, the
// last one's outcome, the instances installed. What cannot be read is left out and logged.
func (a *Agent) registryEntries(ctx context.Context) []*fleet.Host {
	local := &Local{cfg: a.cfg, state: a.state, store: a.store, live: true}
	sts, err := local.Status(ctx, "")
	if err != nil {
		a.fl.log.Warn().Err(err).Msg("read status for the registry")
	}
	apps := make(map[string]*fleet.App, len(sts))
	for _, st := range sts {
		apps[st.App] = a.registryApp(st)
	}
	now := time.Now().UTC()
	out := make([]*fleet.Host, 0, len(a.cfg.Environments))
	for _, env := range a.cfg.Environments {
		out = append(out, &fleet.Host{Env: env, Version: a.Version, Started: a.fl.started, Updated: now, Apps: apps})
	}
	return out
}

func (a *Agent) registryApp(st admin.AppStatus) *fleet.App {
	fa := &fleet.App{}
	if c := st.Current; c != nil {
		fa.SHA, fa.Mark = c.SHA, string(c.Mark)
	}
	switch {
	case st.Active != nil:
		fa.Deploy = registryDeploy(st.Active, st.Active.Started)
	case st.Queued != nil:
		fa.Deploy = registryDeploy(st.Queued, st.Queued.Queued)
	}
	if l := st.Last; l != nil {
		fa.Last = registryDeploy(l, l.Finished)
		if l.Status == state.StatusFailed {
			fa.Unhealthy = fa.Last.Error
		}
	}
	if in, err := a.loadInstalled(st.App); err != nil {
		a.fl.log.Warn().Err(err).Str("app", st.App).Msg("read installed units for the registry")
	} else if in != nil {
		fa.Instances = len(in.Instances)
	}
	return fa
}

func registryDeploy(d *state.Deploy, since time.Time) *fleet.Deploy {
	kind := d.Kind
	if kind == "" {
		kind = state.KindDeploy
	}
	return &fleet.Deploy{ID: d.ID, Kind: kind, SHA: d.SHA, Status: string(d.Status), Note: d.Note,
		Error: abbrev.FirstLine(d.Error), Since: since}
}
