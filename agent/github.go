package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/state"
)

// Defaults for reporting deploys to GitHub. GitHub being slow or down must never hold up a
// deploy: reports wait in a bounded queue, each call is retried with exponential backoff
// (DefaultGitHubBackoff, doubling up to DefaultGitHubMaxBackoff) at most
// DefaultGitHubAttempts times within DefaultGitHubMaxElapsed, and is then dropped with a log
// line.
const (
	DefaultGitHubBackoff     = time.Second
	DefaultGitHubMaxBackoff  = 30 * time.Second
	DefaultGitHubAttempts    = 5
	DefaultGitHubMaxElapsed  = 2 * time.Minute
	DefaultGitHubCallTimeout = 15 * time.Second
	DefaultGitHubQueue       = 256
	// DefaultGitHubDrain is how long a stopping agent keeps sending the reports still queued.
	DefaultGitHubDrain = 10 * time.Second
)

// githubAPI is what the reporter needs from GitHub.
type githubAPI interface {
	CreateDeployment(ctx context.Context, repo string, spec hooks.DeploymentSpec) (int64, error)
	CreateDeploymentStatus(ctx context.Context, repo string, id int64, st hooks.DeploymentStatus) error
}

// ghReport is one thing to tell GitHub about a deploy: create its deployment (when create is
// set) and post a status on it.
type ghReport struct {
	api    githubAPI
	repo   string
	deploy string // pushdeploy's deploy id
	create *hooks.DeploymentSpec
	status hooks.DeploymentStatus
	final  bool // the deploy's last report
}

// reporter sends deploy reports to GitHub from one goroutine, in order, so a deploy's
// statuses follow the creation of its deployment.
type reporter struct {
	Backoff, MaxBackoff time.Duration
	Attempts            int
	MaxElapsed          time.Duration
	CallTimeout         time.Duration

	log zerolog.Logger

	mu     sync.Mutex
	closed bool
	queue  chan ghReport

	ids map[string]int64 // deploy id → GitHub deployment id; used by run only
	// dropped counts the reports dropped since GitHub last answered (used by run only): the
	// first drop of an outage is logged as a warning, the others at debug level, and the
	// first answer after it says how many were lost. While it is not zero each report is
	// tried once, so the backlog drains quickly and recovery is noticed at the next report.
	dropped int
}

func newReporter(log zerolog.Logger, size int) *reporter {
	return &reporter{
		Backoff:     DefaultGitHubBackoff,
		MaxBackoff:  DefaultGitHubMaxBackoff,
		Attempts:    DefaultGitHubAttempts,
		MaxElapsed:  DefaultGitHubMaxElapsed,
		CallTimeout: DefaultGitHubCallTimeout,
		log:         log,
		queue:       make(chan ghReport, size),
		ids:         map[string]int64{},
	}
}

// send queues r without ever blocking; when the queue is full or closed, r is dropped.
func (rp *reporter) send(r ghReport) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.closed {
		rp.log.Warn().Str("deploy", r.deploy).Str("state", r.status.State).Msg("github report dropped: agent stopping")
		return
	}
	select {
	case rp.queue <- r:
	default:
		rp.log.Warn().Str("deploy", r.deploy).Str("state", r.status.State).Msg("github report dropped: queue full")
	}
}

// close stops taking reports; run returns once it has sent the ones queued.
func (rp *reporter) close() {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if !rp.closed {
		rp.closed = true
		close(rp.queue)
	}
}

// run sends the queued reports until the queue is closed and empty. When ctx ends, what is
// left is dropped quickly, each with a log line.
func (rp *reporter) run(ctx context.Context) {
	for r := range rp.queue {
		rp.handle(ctx, r)
	}
}

func (rp *reporter) handle(ctx context.Context, r ghReport) {
	log := rp.log.With().Str("deploy", r.deploy).Str("repo", r.repo).Logger()
	if _, created := rp.ids[r.deploy]; r.create != nil && !created {
		var id int64
		err := rp.retry(ctx, func(ctx context.Context) (err error) {
			id, err = r.api.CreateDeployment(ctx, r.repo, *r.create)
			return err
		})
		if err != nil {
			rp.drop(log, err).Msg("github deployment dropped")
			return
		}
		rp.answered(log)
		rp.ids[r.deploy] = id
		log.Debug().Int64("github_deployment", id).Str("environment", r.create.Environment).Msg("github deployment created")
	}
	id, ok := rp.ids[r.deploy]
	if !ok {
		// Its deployment was never created (dropped, or the deploy never started).
		return
	}
	if r.final {
		delete(rp.ids, r.deploy)
	}
	err := rp.retry(ctx, func(ctx context.Context) error {
		return r.api.CreateDeploymentStatus(ctx, r.repo, id, r.status)
	})
	if err != nil {
		rp.drop(log, err).Int64("github_deployment", id).Str("state", r.status.State).Msg("github deployment status dropped")
		return
	}
	rp.answered(log)
	log.Debug().Int64("github_deployment", id).Str("state", r.status.State).Msg("github deployment status posted")
}

// drop counts a report lost to err and returns the event to log it with: a warning for
// the first of an outage (saying later ones are quiet) or one GitHub refused for good (a
// bad token or request: each says so), debug level for the rest of an outage.
func (rp *reporter) drop(log zerolog.Logger, err error) *zerolog.Event {
	if permanent(err) {
		return log.Warn().Err(err)
	}
	rp.dropped++
	if rp.dropped > 1 {
		return log.Debug().Err(err)
	}
	return log.Warn().Err(err).Str("until", "GitHub answers: further reports dropped are logged at debug level")
}

// answered notes that GitHub took a report, and logs the end of an outage.
func (rp *reporter) answered(log zerolog.Logger) {
	if rp.dropped > 0 {
		log.Info().Int("dropped", rp.dropped).Msg("github answers again: reporting resumed")
		rp.dropped = 0
	}
}

// retry calls f until it succeeds, fails for good (GitHub refused the request or the
// token), or the attempts or the time are used up; during an outage (reports dropped since
// GitHub last answered) it calls f once.
func (rp *reporter) retry(ctx context.Context, f func(context.Context) error) error {
	start := time.Now()
	wait := rp.Backoff
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, rp.CallTimeout)
		err := f(cctx)
		cancel()
		if err == nil || permanent(err) || attempt >= rp.Attempts || rp.dropped > 0 || time.Since(start)+wait > rp.MaxElapsed {
			return err
		}
		rp.log.Debug().Err(err).Int("attempt", attempt).Dur("backoff", wait).Msg("github call failed, retrying")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, rp.MaxBackoff)
	}
}

// permanent reports whether sending the same request again cannot succeed.
func permanent(err error) bool {
	return errors.Is(err, hooks.ErrRejected) || errors.Is(err, hooks.ErrUnauthorized) || errors.Is(err, hooks.ErrNoAccess)
}

// ghDeployment is what the agent reports for one deploy.
type ghDeployment struct {
	api                     githubAPI
	repo, environment, logs string
}

// github returns how deploy d of ap is reported to GitHub, or nil when it is not: the app
// has no github settings, or d is a restart or rollback (no new commit is deployed).
func (a *Agent) github(ap *app, d *state.Deploy) *ghDeployment {
	if ap.gh == nil || a.reports == nil || (d.Kind != state.KindDeploy && d.Kind != state.KindReconcile && d.Kind != "") {
		return nil
	}
	env := a.environmentOf(ap.cfg, d.Branch)
	if ap.cfg.GitHub.EnvironmentPerHost {
		env += "/" + a.cfg.Host
	}
	g := &ghDeployment{api: ap.gh, repo: ap.cfg.Repo, environment: env}
	if u := ap.cfg.GitHub.PublicURL; u != "" {
		g.logs = strings.TrimSuffix(u, "/") + "/deploys/" + d.ID
	}
	return g
}

// environmentOf names the environment a branch deploys to: the configured environment whose
// branch pattern matches it, else the first one.
func (a *Agent) environmentOf(cfg *config.App, branch string) string {
	for _, e := range a.cfg.Environments {
		if cfg.Deploys([]string{e}, branch) {
			return e
		}
	}
	return a.cfg.Environments[0]
}

// reportQueued creates d's GitHub deployment as soon as the push is accepted, so that a
// deploy superseded before it starts can still be marked inactive.
func (a *Agent) reportQueued(g *ghDeployment, d *state.Deploy) {
	a.reportState(g, d, "queued", "queued")
}

// reportStart marks d's deployment in progress, creating it if that was not done yet (the
// agent restarted since the push was queued).
func (a *Agent) reportStart(g *ghDeployment, d *state.Deploy) {
	a.reportState(g, d, "in_progress", "deploying")
}

// reportState sends d's deployment the state (GitHub's word) with a description that says
// what the agent does with which commit; the deployment is created first when needed.
func (a *Agent) reportState(g *ghDeployment, d *state.Deploy, st, verb string) {
	if g == nil {
		return
	}
	a.reports.send(ghReport{
		api: g.api, repo: g.repo, deploy: d.ID, create: a.deploymentSpec(g, d),
		status: hooks.DeploymentStatus{State: st, Description: verb + " " + abbrev.SHA(d.SHA) + " (" + d.ID + ")", LogURL: g.logs, Environment: g.environment},
	})
}

func (a *Agent) deploymentSpec(g *ghDeployment, d *state.Deploy) *hooks.DeploymentSpec {
	return &hooks.DeploymentSpec{
		Ref:         d.SHA,
		Environment: g.environment,
		Description: "pushdeploy " + d.ID + " on " + a.cfg.Host,
		Production:  strings.SplitN(g.environment, "/", 2)[0] == "production",
	}
}

// reportEnd posts d's final status: success, failure with the reason, or inactive when it
// went stale, was superseded or was interrupted.
func (a *Agent) reportEnd(g *ghDeployment, d *state.Deploy) {
	if g == nil {
		return
	}
	st := hooks.DeploymentStatus{LogURL: g.logs, Environment: g.environment}
	switch d.Status {
	case state.StatusSucceeded:
		st.State, st.Description = "success", "deployed "+abbrev.SHA(d.SHA)+" ("+d.ID+")"
	case state.StatusFailed:
		st.State, st.Description = "failure", abbrev.FirstLine(d.Error)
	case state.StatusStale:
		st.State, st.Description = "inactive", "stale: "+d.Note
	case state.StatusSuperseded:
		st.State, st.Description = "inactive", d.Note
	case state.StatusHalted:
		st.State, st.Description = "inactive", "halted: "+d.Note
	default: // queued again: interrupted by shutdown
		st.State, st.Description = "inactive", "interrupted by agent shutdown"
	}
	a.reports.send(ghReport{api: g.api, repo: g.repo, deploy: d.ID, status: st, final: true})
}
