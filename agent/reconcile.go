package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// reconcileTimeout bounds one catch-up check: listing the remote's refs, and etcd.
const reconcileTimeout = time.Minute

// reconcileLoop catches the app up with its branch at start, every reconcile_interval and
// after a deploy went stale, until ctx ends: a host that was down, partitioned or missed a
// webhook converges.
func (a *Agent) reconcileLoop(ctx context.Context, ap *app) {
	log := a.component("reconcile").Str("app", ap.cfg.Name()).Logger()
	branches := ap.cfg.Branches(a.cfg.Environments)
	if len(branches) != 1 || strings.ContainsAny(branches[0], `*?[\`) {
		log.Info().Strs("branches", branches).Msg("catch-up off: the app deploys more than one branch here")
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	quiet := "" // the last reason not to deploy, logged once
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-ap.catchUp:
		}
		why := a.reconcile(ctx, ap, branches[0], log)
		if why != quiet && why != "" {
			log.Info().Str("reason", why).Msg("not catching up")
		}
		quiet = why
		t.Reset(a.cfg.ReconcileInterval)
	}
}

// reconcile queues a deploy of kind reconcile when branch points at a commit this host does
// not run and nothing stops it; otherwise it returns why not ("" when up to date or busy).
func (a *Agent) reconcile(ctx context.Context, ap *app, branch string, log zerolog.Logger) string {
	ctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
	defer cancel()
	name := ap.cfg.Name()
	tip, err := ap.cfg.Origin().Tip(ctx, branch)
	if errors.Is(err, release.ErrBranchNotFound) {
		return ""
	}
	if err != nil {
		if ctx.Err() == nil {
			log.Warn().Err(err).Msg("catch-up: list the remote's branch")
		}
		return ""
	}
	cur, err := a.store.Current(name)
	if err != nil {
		log.Warn().Err(err).Msg("catch-up: read the current release")
		return ""
	}
	if tip == cur || a.busy(ap) {
		return ""
	}
	if why := a.failedHere(name, tip); why != "" {
		return why
	}
	if a.fl.store != nil {
		lock, halt, err := a.fl.store.Check(ctx, name, a.environmentOf(ap.cfg, branch), tip)
		switch {
		case err != nil:
			log.Warn().Err(err).Msg("catch-up: read the fleet's lock and halt")
			return ""
		case halt != nil:
			return fmt.Sprintf("%s is halted: it failed on %s", abbrev.SHA(tip), halt.Host)
		case lock != nil:
			return "deploys are locked " + lock.String()
		}
	} else if lock, err := LocalLock(a.cfg, name); err != nil || lock != nil {
		return fmt.Sprintf("deploys are locked on this host (%v)", orErr(lock, err))
	}
	d := a.newOp(name, state.KindReconcile, tip)
	d.Branch = branch
	d.Note = fmt.Sprintf("branch %s is at %s; this host runs %s", branch, abbrev.SHA(tip), orNone(abbrev.SHA(cur)))
	if err := a.queueOp(ap, d); err != nil {
		log.Error().Err(err).Msg("catch-up: queue a deploy")
	}
	return ""
}

// busy reports whether a deploy of a pushed commit is queued or under way for the app: it
// deploys the branch's tip, or goes stale, and the next check looks again.
func (a *Agent) busy(ap *app) bool {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	isDeploy := func(kind string) bool {
		return kind == state.KindDeploy || kind == state.KindReconcile || kind == ""
	}
	return (ap.pending != nil && isDeploy(ap.pending.Kind)) || (ap.act != nil && isDeploy(ap.act.kind))
}

// failedHere says why sha is not tried again on this host, "" if it may be: its release
// is marked bad, or its last deploy here failed after the release was laid out (the
// script or the services, which a retry would fail again). A deploy that failed before
// (fetching) is retried at each check.
func (a *Agent) failedHere(app, sha string) string {
	if _, err := os.Stat(a.store.ReleaseDir(app, sha)); err != nil {
		return ""
	}
	rels, err := a.store.List(app)
	if err == nil {
		for _, r := range rels {
			if r.SHA == sha && r.Mark == release.Bad {
				return fmt.Sprintf("release %s is marked bad on this host: push a fix", abbrev.SHA(sha))
			}
		}
	}
	hist, err := a.state.History(app, 0)
	if err != nil {
		return ""
	}
	for _, d := range hist {
		if d.SHA == sha && (d.Kind == state.KindDeploy || d.Kind == state.KindReconcile || d.Kind == "") && d.Status.Final() {
			if d.Status == state.StatusFailed {
				return fmt.Sprintf("%s failed on this host (%s): push a fix", abbrev.SHA(sha), d.ID)
			}
			return ""
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

func orErr(v fmt.Stringer, err error) any {
	if err != nil {
		return err
	}
	return v
}
