package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
	"github.com/pushdeploy/pushdeploy/units"
)

// appCurrent is a configured app and its current release ("" before its first deploy).
func (a *Agent) appCurrent(app string) (*app, string, error) {
	ap, ok := a.apps[app]
	if !ok {
		return nil, "", fmt.Errorf("app %q: %w", app, state.ErrNotFound)
	}
	cur, err := a.store.Current(app)
	if err != nil {
		return nil, "", err
	}
	return ap, cur, nil
}

// Restart queues a rolling restart of app's current release (one service's instances
// only, when service is set): no fetch, no new release, each batch health-checked as in a
// deploy. It returns the queued record; the app's queue runs it.
func (a *Agent) Restart(app, service string) (*state.Deploy, error) {
	ap, cur, err := a.appCurrent(app)
	if err != nil {
		return nil, err
	}
	if cur == "" {
		return nil, fmt.Errorf("restart %s: no release is current yet: %w", app, admin.ErrNothingToDo)
	}
	spec, err := units.Load(a.store.ReleaseDir(app, cur))
	if errors.Is(err, units.ErrNoServiceFile) {
		return nil, fmt.Errorf("restart %s: release %.12s runs no services (no service.json): %w", app, cur, admin.ErrNothingToDo)
	}
	if err != nil {
		return nil, fmt.Errorf("restart %s: %w", app, err)
	}
	if _, ok := spec.Services[service]; service != "" && !ok {
		return nil, fmt.Errorf("restart %s: service %q: %w (release %.12s has %s)", app, service, state.ErrNotFound, cur, strings.Join(sortedServices(spec), ", "))
	}
	d := a.newOp(app, state.KindRestart, cur)
	d.Service = service
	return d, a.queueOp(ap, d)
}

// Rollback queues a health-checked rollout to a release already on disk, switching current
// when it succeeds: sha (a unique prefix is enough), or, when empty, the newest good
// release older than the current one. A release marked bad can be given explicitly; the
// record's note says so.
func (a *Agent) Rollback(app, sha string) (*state.Deploy, error) {
	ap, cur, err := a.appCurrent(app)
	if err != nil {
		return nil, err
	}
	rels, err := a.store.List(app)
	if err != nil {
		return nil, err
	}
	target, err := rollbackTarget(rels, cur, sha)
	if err != nil {
		return nil, fmt.Errorf("roll %s back: %w", app, err)
	}
	d := a.newOp(app, state.KindRollback, target.SHA)
	d.Previous = cur
	if target.Mark == release.Bad {
		d.Note = fmt.Sprintf("release %.12s is marked bad (%s); rolling back to it as asked", target.SHA, abbrev.FirstLine(target.Reason))
	}
	return d, a.queueOp(ap, d)
}

// rollbackTarget picks the release a rollback goes to among rels (newest first).
func rollbackTarget(rels []release.Release, cur, sha string) (release.Release, error) {
	if sha != "" {
		var found []release.Release
		for _, r := range rels {
			if strings.HasPrefix(r.SHA, strings.ToLower(sha)) {
				found = append(found, r)
			}
		}
		switch {
		case len(found) == 0:
			return release.Release{}, fmt.Errorf("release %s: %w on this host", sha, state.ErrNotFound)
		case len(found) > 1:
			return release.Release{}, fmt.Errorf("release %s is ambiguous: %d releases start with it", sha, len(found))
		case found[0].SHA == cur:
			return release.Release{}, fmt.Errorf("release %.12s is already current: %w", cur, admin.ErrNothingToDo)
		}
		return found[0], nil
	}
	i := slices.IndexFunc(rels, func(r release.Release) bool { return r.SHA == cur })
	if cur == "" || i < 0 {
		return release.Release{}, fmt.Errorf("no release is current yet: %w", admin.ErrNothingToDo)
	}
	for _, r := range rels[i+1:] {
		if r.Mark == release.Good {
			return r, nil
		}
	}
	return release.Release{}, fmt.Errorf("no good release older than the current %.12s on this host: %w", cur, admin.ErrNothingToDo)
}

func (a *Agent) newOp(app, kind, sha string) *state.Deploy {
	now := time.Now().UTC()
	return &state.Deploy{ID: a.ids.Next(now), App: app, Kind: kind, SHA: sha, Status: state.StatusQueued, Queued: now}
}

func (a *Agent) queueOp(ap *app, d *state.Deploy) error {
	if err := a.state.Save(d); err != nil {
		return err
	}
	a.log.Info().Str("app", d.App).Str("deploy", d.ID).Str("kind", d.Kind).Str("sha", d.SHA).Msg(d.Kind + " queued")
	a.enqueue(ap, d)
	return nil
}

// restartPipeline runs a restart: the current release's instances restart batch after
// batch, health-checked; current does not move and no release is marked.
func (a *Agent) restartPipeline(ctx context.Context, ap *app, d *state.Deploy, set func(state.Status), log zerolog.Logger) error {
	ap.op.Lock()
	defer ap.op.Unlock()
	cur, err := a.store.Current(d.App)
	if err != nil {
		return err
	}
	if cur == "" {
		return fmt.Errorf("restart %s: no release is current: %w", d.App, admin.ErrNothingToDo)
	}
	d.SHA, d.Previous = cur, cur
	set(state.StatusStarting)
	return a.restartServices(ctx, d, log)
}

// rollbackPipeline runs a rollback: the release on disk is rolled out like a deploy's (the
// installer reverts to the running units if it fails), then becomes current, marked good.
func (a *Agent) rollbackPipeline(ctx context.Context, ap *app, d *state.Deploy, set func(state.Status), log zerolog.Logger) error {
	ap.op.Lock()
	defer ap.op.Unlock()
	rels, err := a.store.List(d.App)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(rels, func(r release.Release) bool { return r.SHA == d.SHA })
	if i < 0 {
		return fmt.Errorf("roll %s back to %.12s: release no longer on disk: %w", d.App, d.SHA, state.ErrNotFound)
	}
	if d.Previous, err = a.store.Current(d.App); err != nil {
		return err
	}
	if d.Previous == d.SHA {
		return fmt.Errorf("roll %s back: release %.12s is already current: %w", d.App, d.SHA, admin.ErrNothingToDo)
	}
	if d.Note != "" {
		log.Warn().Str("sha", d.SHA).Str("mark", string(rels[i].Mark)).Msg("rolling back to a release marked bad")
	}
	env, err := a.prepareEnv(ctx, ap, d, log)
	if err != nil {
		return err
	}
	return a.goLive(ctx, d, rels[i], env, set, log)
}

func sortedServices(spec *units.Spec) []string {
	var out []string
	for name := range spec.Services {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
