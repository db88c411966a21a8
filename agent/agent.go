package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/procgroup"
	"github.com/pushdeploy/pushdeploy/internal/sdnotify"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/renv"
	"github.com/pushdeploy/pushdeploy/rollout"
	"github.com/pushdeploy/pushdeploy/rollout/systemd"
	"github.com/pushdeploy/pushdeploy/state"
)

// DefaultShutdownGrace is how long a deploy under way may go on after the agent is asked
// to stop, before it is interrupted.
const DefaultShutdownGrace = 30 * time.Second

// Agent is the daemon. Open binds its sockets and recovers state; Run serves until its
// context ends.
type Agent struct {
	// ShutdownGrace bounds how long Run waits for deploys under way when stopping.
	ShutdownGrace time.Duration
	// Version is reported by /healthz and the admin API.
	Version string
	// Notifier, when set, is told over the sd_notify protocol when the agent is ready, what
	// it does and when it stops: systemd's notification socket (sdnotify.Socket) under a
	// Type=notify unit. Nil, outside systemd, sends nothing.
	Notifier sdnotify.Notifier
	// Watchdog is the unit's watchdog timeout (WATCHDOG_USEC). With a Notifier, the agent
	// checks itself every Watchdog/2 and pings systemd only while every check passes
	// (livenessChecks); zero sends no pings.
	Watchdog time.Duration
	// StageLimit is how long a deploy may stay in one step without progress, on top of the
	// step's own timeout, before the watchdog counts its worker wedged (DefaultStageLimit).
	StageLimit time.Duration
	// WebLimits bound the webhook listener's timeouts and the memory unauthenticated
	// bodies may hold (DefaultWebLimits); read by Open.
	WebLimits WebLimits

	cfg     *config.Config
	out     io.Writer
	log     zerolog.Logger
	state   *state.Store
	dirs    datadir.Layout
	store   *release.Store
	apps    map[string]*app
	metrics *metrics
	ids     state.IDs
	reports *reporter   // nil when no app reports to GitHub
	renv    *renv.Store // nil when the agent has no etcd section
	view    *view       // the status page, log followers, notifications
	fl      fleetSide   // the host's registry entry, the fleet's gate, catch-up

	sdMu sync.Mutex
	sd   *systemd.Manager // opened by the first operation that starts services

	web, admin     *http.Server
	webLn, adminLn net.Listener
	budget         *hooks.Budget // shared by every webhook's body until it is verified

	sup      *sdnotify.Supervisor // nil without a Notifier
	stopping atomic.Bool

	// onBatch, when set (by a test, before Open), is told of each rollout batch as it
	// starts, before it is drained: the one place a fault can be injected between batches.
	onBatch func(rollout.Step)
}

// New returns an agent for cfg that logs to out (already formatted: JSON or console).
func New(cfg *config.Config, out io.Writer, level zerolog.Level) *Agent {
	a := &Agent{
		ShutdownGrace: DefaultShutdownGrace,
		StageLimit:    DefaultStageLimit,
		WebLimits:     DefaultWebLimits(),
		cfg:           cfg,
		out:           out,
		log:           newLogger(out, level).Str("component", "agent").Logger(),
		dirs:          cfg.Layout(),
		store:         release.NewStore(cfg.Layout()),
		apps:          make(map[string]*app, len(cfg.Apps)),
		metrics:       newMetrics(),
	}
	a.metrics.ops = newOpsMetrics(a.metrics.reg, a)
	a.view = newView(a, level)
	for name, ac := range cfg.Apps {
		ap := newApp(ac)
		if g := ac.GitHub; g != nil {
			gh, err := hooks.NewGitHub(g.Token(), g.APIURL)
			if err != nil {
				// The configuration was validated: this cannot happen, and must not stop deploys.
				a.log.Error().Err(err).Str("app", name).Msg("github reporting disabled")
			} else {
				ap.gh = gh
				if a.reports == nil {
					a.reports = newReporter(newLogger(out, level).Str("component", "github").Logger(), DefaultGitHubQueue)
				}
			}
		}
		a.apps[name] = ap
	}
	return a
}

// Open creates the data directory, opens the state, clears what a crash left behind, queues
// again the deploys that were accepted but not finished, and binds the webhook listener and
// the admin socket.
func (a *Agent) Open() (err error) {
	if err := a.prepareDataDir(); err != nil {
		return err
	}
	a.state, err = state.Open(a.dirs.StateDB(), false, a.cfg.HistoryLimit)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	for name, ap := range a.apps {
		if err := a.store.Recover(name); err != nil {
			return err
		}
		if err := atomicfile.RemoveTemp(a.dirs.Config(name)); err != nil {
			return err
		}
		if ap.cfg.Config != nil {
			// The secrets of the configuration in place, which the instances running now
			// were started with: learned before anything quotes their output.
			// A broken cache is reported when a deploy needs it.
			_, _ = a.loadGood(name)
		}
	}
	if e := a.cfg.Etcd; e != nil {
		// Connecting does not wait for etcd: an agent starts, and deploys from its cache,
		// while etcd is down.
		rc := e.Renv()
		rc.OnRequest = func(op string) { a.metrics.etcd.WithLabelValues(op).Inc() }
		if a.renv, err = renv.Open(rc); err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
	}
	if err := a.openFleet(); err != nil {
		return err
	}
	if err := a.resume(); err != nil {
		return err
	}
	a.webLn, err = net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Listen, err)
	}
	lim := a.WebLimits
	ans := jsonAnswers{Listener: a.webLn, maxHeader: lim.MaxHeaderBytes, log: a.log}
	if a.cfg.TLS != nil {
		if ans.tls, err = tlsConfig(a.cfg.TLS, a.log); err != nil {
			return err // Close closes the plain listener
		}
	}
	a.webLn = ans
	a.adminLn, err = admin.Listen(a.cfg.AdminSocket)
	if err != nil {
		return err
	}
	a.budget = hooks.NewBudget(lim.UnverifiedBodies, lim.UnverifiedRate, lim.BudgetWait)
	a.web = &http.Server{
		Handler:           a.webHandler(),
		ErrorLog:          httpErrorLog(a.log),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		// OPTIONS * would be answered 200 by net/http itself: the handler refuses it.
		DisableGeneralOptionsHandler: true,
	}
	answers := &Local{cfg: a.cfg, state: a.state, store: a.store, live: true, gc: a.GC}
	a.admin = &http.Server{Handler: admin.Handler(adminBackend{Local: answers, a: a}), ReadHeaderTimeout: 10 * time.Second}
	if err := a.loadLastSuccess(); err != nil {
		return err
	}
	return a.openView()
}

// Addr is the webhook listener's address, once Open has bound it.
func (a *Agent) Addr() string { return a.webLn.Addr().String() }

// resume puts back in the queue, per app, the newest deploy that was accepted but had not
// finished when the agent last stopped (or was killed); older unfinished ones are
// superseded by it. A 202 answered to GitHub is a promise to deploy.
func (a *Agent) resume() error {
	unfinished, err := a.state.Unfinished()
	if err != nil {
		return err
	}
	newest := map[string]*state.Deploy{}
	for i := range unfinished {
		d := &unfinished[i]
		if _, ok := a.apps[d.App]; !ok {
			continue
		}
		a.endLeftScript(d)
		if old := newest[d.App]; old != nil {
			if err := a.endOlder(old, d); err != nil {
				return err
			}
		}
		newest[d.App] = d
	}
	apps := make([]string, 0, len(newest))
	for app := range newest {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	for _, app := range apps {
		d := newest[app]
		if d.Status != state.StatusQueued {
			d.Note = fmt.Sprintf("resumed after agent restart (was %s)", d.Status)
		}
		d.Status = state.StatusQueued
		if err := a.state.Save(d); err != nil {
			return err
		}
		a.log.Info().Str("app", app).Str("deploy", d.ID).Msg("deploy resumed")
		a.enqueue(a.apps[app], d)
	}
	return nil
}

// endOlder records old, an unfinished deploy that by, a newer one, replaces at restart.
// One killed after it switched `current` and before it recorded its end went live: it is
// recorded succeeded, so that history says which deploy put the running release there.
func (a *Agent) endOlder(old, by *state.Deploy) error {
	wentLive := false
	if old.Status == state.StatusStarting && old.SHA != old.Previous {
		cur, err := a.store.Current(old.App)
		if err != nil {
			return err
		}
		wentLive = cur == old.SHA
	}
	old.Finished = time.Now().UTC()
	if wentLive {
		old.Status, old.Note = state.StatusSucceeded, "went live; the agent stopped before it recorded so"
	} else {
		old.Status, old.Note = state.StatusSuperseded, "superseded by "+by.ID+" (agent restart)"
	}
	return a.state.Save(old)
}

// endLeftScript ends the deploy script an agent killed during d left running, so that it
// never runs beside the one d runs again (or d's successor), and forgets it.
func (a *Agent) endLeftScript(d *state.Deploy) {
	if d.ScriptPGID == 0 {
		return
	}
	log := a.log.With().Str("app", d.App).Str("deploy", d.ID).Int("pgid", d.ScriptPGID).Logger()
	n, err := procgroup.KillLeft(d.ScriptPGID, "PUSHDEPLOY_DEPLOY_ID="+d.ID, 5*time.Second)
	switch {
	case err != nil:
		log.Error().Err(err).Msg("end the deploy script left running")
	case n > 0:
		log.Warn().Int("processes", n).Msg("deploy script left running by the agent's last life killed")
	}
	d.ScriptPGID = 0
}

// Run serves webhooks and the admin API and runs the deploy queues until ctx ends. Then it
// stops taking webhooks, lets deploys under way finish within ShutdownGrace, and returns.
// With a Notifier, systemd hears READY=1 once everything runs, the status as the queues
// change, watchdog pings while the agent is healthy, and STOPPING=1 when it begins to stop.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	if a.Notifier != nil {
		a.sup = a.newSupervisor()
	}
	stop, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	deployCtx, cancelDeploys := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDeploys()
	// GitHub reports are sent by their own goroutine, so that GitHub never holds up a deploy.
	reportsCtx, cancelReports := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReports()
	reportsDone := make(chan struct{})
	if a.reports != nil {
		go func() { defer close(reportsDone); a.reports.run(reportsCtx) }()
	} else {
		close(reportsDone)
	}
	a.startView()
	// Slots of deploys under way are released through the fleet's session: it stops last.
	defer a.startFleet(stop)()
	var workers sync.WaitGroup
	for _, ap := range a.apps {
		workers.Go(func() { a.work(stop, deployCtx, ap) })
		if a.renv != nil && ap.cfg.Config != nil {
			workers.Go(func() { a.watchConfig(stop, ap) })
		}
	}
	errc := make(chan error, 3)
	var servers sync.WaitGroup
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{a.web, a.webLn}, {a.admin, a.adminLn}} {
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve: %w", err)
			}
		}()
	}
	a.log.Info().Str("listen", a.Addr()).Str("admin", a.cfg.AdminSocket).Str("host", a.cfg.Host).
		Strs("environments", a.cfg.Environments).Str("version", a.Version).Msg("agent started")
	// The listeners were bound and the state recovered by Open: the agent is ready.
	supCtx, stopSup := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSup()
	var sup sync.WaitGroup
	if a.sup != nil {
		sup.Go(func() {
			if err := a.sup.Run(supCtx); err != nil {
				errc <- fmt.Errorf("tell systemd the agent is ready: %w", err)
			}
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	a.log.Info().Msg("agent stopping")
	a.stopping.Store(true)
	if a.sup != nil {
		a.sup.Stopping()
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	a.stopPages(shutdownCtx)
	a.web.Shutdown(shutdownCtx)
	a.admin.Shutdown(shutdownCtx)
	cancel()
	servers.Wait()
	// Workers stop taking deploys now; a deploy under way gets the grace period.
	stopWorkers()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(a.ShutdownGrace):
		a.log.Warn().Dur("grace", a.ShutdownGrace).Msg("interrupting deploys under way")
		cancelDeploys()
		<-done
	}
	// The deploys have reported their ends: send what is queued, within a bound.
	if a.reports != nil {
		a.reports.close()
		select {
		case <-reportsDone:
		case <-time.After(DefaultGitHubDrain):
			a.log.Warn().Dur("drain", DefaultGitHubDrain).Msg("dropping github reports still queued")
			cancelReports()
			<-reportsDone
		}
	}
	stopSup()
	sup.Wait()
	a.stopNotifications()
	a.log.Info().Msg("agent stopped")
	return err
}

func (a *Agent) close() {
	if a.webLn != nil {
		a.webLn.Close()
	}
	if a.adminLn != nil {
		a.adminLn.Close()
		os.Remove(a.cfg.AdminSocket)
	}
	if a.view.uiLn != nil {
		a.view.uiLn.Close()
	}
	if a.state != nil {
		a.state.Close()
		a.state = nil
	}
	if a.sd != nil {
		a.sd.Close()
		a.sd = nil
	}
	if a.renv != nil {
		a.renv.Close()
		a.renv = nil
	}
	a.closeFleet()
}
