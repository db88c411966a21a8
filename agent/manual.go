package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// DeployBranch queues a deploy of the commit at the tip of app's branch for env (the host's
// only environment when empty), as a push of it would: the record is of kind deploy with
// Trigger manual and Pusher the user, it goes through the app's queue (a newer push
// supersedes it, and it supersedes a waiting one), and the pipeline checks again that the
// branch still points at it before fetching (stale otherwise). With sha, the tip must be
// that commit (a prefix will do): the deploy never goes anywhere the branch does not say.
//
// Errors: state.ErrNotFound for an unknown app or a missing branch; admin.ErrInvalid for an
// environment this host does not deploy, a branch pattern, or a sha that is not the tip.
func (a *Agent) DeployBranch(ctx context.Context, app string, req admin.DeployRequest) (*state.Deploy, error) {
	ap, ok := a.apps[app]
	if !ok {
		return nil, fmt.Errorf("app %q: %w", app, state.ErrNotFound)
	}
	env := req.Env
	envs := a.cfg.Environments
	switch {
	case env == "" && len(envs) == 1:
		env = envs[0]
	case env == "":
		return nil, fmt.Errorf("host %s deploys %s: say which with --env: %w", a.cfg.Host, strings.Join(envs, ", "), admin.ErrInvalid)
	case !slices.Contains(envs, env):
		return nil, fmt.Errorf("host %s deploys %s, not %s: %w", a.cfg.Host, strings.Join(envs, ", "), env, admin.ErrInvalid)
	}
	branch := ap.cfg.Branches([]string{env})[0]
	if strings.ContainsAny(branch, `*?[\`) {
		return nil, fmt.Errorf("apps.%s.branch %q is a pattern: which branch to deploy is not known: %w", app, branch, admin.ErrInvalid)
	}
	tip, err := ap.cfg.Origin().Tip(ctx, branch)
	if errors.Is(err, release.ErrBranchNotFound) {
		return nil, fmt.Errorf("deploy %s: branch %s does not exist: %w", app, branch, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w", app, err)
	}
	if req.SHA != "" && !strings.HasPrefix(tip, strings.ToLower(req.SHA)) {
		return nil, fmt.Errorf("deploy %s: %s is at %.12s, not %s: a host deploys only what its branch points at (push it there, or roll back to a release on disk): %w",
			app, branch, tip, req.SHA, admin.ErrInvalid)
	}
	user := req.User
	if user == "" {
		user = "unknown"
	}
	now := time.Now().UTC()
	d := &state.Deploy{ID: a.ids.Next(now), App: app, Kind: state.KindDeploy, SHA: tip, Branch: branch,
		Pusher: user, Trigger: state.TriggerManual, Status: state.StatusQueued, Queued: now}
	if err := a.state.Save(d); err != nil {
		return nil, err
	}
	a.log.Info().Str("app", app).Str("deploy", d.ID).Str("sha", tip).Str("branch", branch).Str("user", user).Msg("manual deploy queued")
	a.enqueue(ap, d)
	return d, nil
}
