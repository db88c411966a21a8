package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/state"
)

// fleetSide is the agent's part in its fleet. With etcd, a session keeps the host's lease
// and registry entry, and every deploy of a pushed commit passes the fleet's gate (the
// lock, halts, canaries, slots); without etcd, store is nil and the gate is the host's own
// deploy lock file.
type fleetSide struct {
	store   *fleet.Store
	session *fleet.Session
	dirty   chan struct{}   // the registry entry is out of date
	stop    context.Context // ends when the agent stops taking deploys: waiting ends too
	started time.Time
	log     zerolog.Logger
}

// openFleet prepares the fleet's client; like renv's, it does not wait for etcd.
func (a *Agent) openFleet() error {
	a.fl = fleetSide{dirty: make(chan struct{}, 1), started: time.Now().UTC(),
		log: a.component("fleet").Logger()}
	if a.cfg.Etcd == nil {
		return nil
	}
	fc := a.cfg.Etcd.FleetStore()
	fc.OnRequest = func(op string) { a.metrics.etcd.WithLabelValues("fleet_" + op).Inc() }
	s, err := fleet.Open(fc)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	se, err := s.Session(a.cfg.Host)
	if err != nil {
		s.Close()
		return fmt.Errorf("host: %w", err)
	}
	se.OnError = func(err error) { a.fl.log.Warn().Err(err).Msg("fleet lease") }
	a.fl.store, a.fl.session = s, se
	return nil
}

func (a *Agent) closeFleet() {
	if a.fl.store != nil {
		a.fl.store.Close()
		a.fl.store = nil
	}
}

// startFleet starts what runs beside the queues: each app's catch-up loop until stop ends,
// and with etcd the session and the registry until the returned function is called (after
// the deploys under way have finished: their slots are released through the session), which
// waits for all of them.
func (a *Agent) startFleet(stop context.Context) func() {
	a.fl.stop = stop
	var wg sync.WaitGroup
	for _, ap := range a.apps {
		wg.Go(func() { a.reconcileLoop(stop, ap) })
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(stop))
	if a.fl.session != nil {
		wg.Go(func() { a.fl.session.Run(ctx) })
		wg.Go(func() { a.publishLoop(ctx) })
		a.registryChanged()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// registryChanged marks the host's registry entry out of date.
func (a *Agent) registryChanged() {
	select {
	case a.fl.dirty <- struct{}{}:
	default:
	}
}

// publishCoalesce is how long the registry waits after a change for more: a deploy's
// quick steps (fetching, releasing) make one write, not several.
const publishCoalesce = 100 * time.Millisecond

// publishLoop writes the registry entry each time it is out of date, until ctx ends. The
// first failure of an etcd outage is a warning, the next ones are debug lines, and the
// first write after it says so (the session writes the entry again on its new lease).
func (a *Agent) publishLoop(ctx context.Context) {
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.fl.dirty:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(publishCoalesce):
		}
		for _, h := range a.registryEntries(ctx) {
			err := a.fl.session.Publish(ctx, h)
			switch {
			case ctx.Err() != nil:
			case err != nil && failing:
				a.fl.log.Debug().Err(err).Msg("publish registry entry")
			case err != nil:
				a.fl.log.Warn().Err(err).Str("until", "etcd answers: further failures are logged at debug level").Msg("publish registry entry")
				failing = true
			case failing:
				a.fl.log.Info().Msg("registry entry published again")
				failing = false
			}
		}
	}
}

// errShutdown ends a deploy that waited when the agent stopped: it is queued again and
// resumes at the next start.
var errShutdown = errors.New("agent stopping")

// endedError ends a deploy that did not run, with its final status and the reason.
type endedError struct {
	status state.Status
	reason string
}

func (e *endedError) Error() string { return string(e.status) + ": " + e.reason }

// acquire is the gate a deploy of a pushed commit passes before it fetches: the deploy
// lock, and with a fleet halts, canary hosts and slots. While it waits the deploy is
// recorded `waiting` with what it waits for; a newer push supersedes it (newest wins). It
// returns an *endedError for a deploy that must not run (halted, superseded), or ctx's
// error when the agent stops.
func (a *Agent) acquire(ctx context.Context, ap *app, d *state.Deploy, set func(state.Status), log zerolog.Logger) error {
	began := time.Now()
	waited := false
	say := func(reason string) {
		waited = true
		d.Note = reason
		set(state.StatusWaiting)
		log.Info().Str("reason", reason).Msg("deploy waiting")
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.fl.stop != nil {
		defer context.AfterFunc(a.fl.stop, cancel)()
	}
	newer := a.supersedeWaiting(wctx, cancel, ap)
	var err error
	t := fleet.Ticket{App: d.App, Env: a.environmentOf(ap.cfg, d.Branch), SHA: d.SHA, Deploy: d.ID}
	switch {
	case a.fl.session == nil:
		err = a.waitLocalLock(wctx, ap, say)
	case ap.cfg.Fleet == nil && a.unpaced(wctx, t, log):
	default:
		if ap.cfg.Fleet != nil {
			t.Policy = ap.cfg.Fleet.Policy()
		}
		ap.slot, err = a.fl.session.Acquire(wctx, t, say)
	}
	cancel()
	by := newer()
	switch {
	case errors.Is(err, fleet.ErrHalted):
		return &endedError{status: state.StatusHalted, reason: err.Error()}
	case err != nil && by != nil && ctx.Err() == nil:
		return &endedError{status: state.StatusSuperseded, reason: "superseded by " + by.ID + " (" + by.Kind + " " + abbrev.SHA(by.SHA) + ") while waiting"}
	case err != nil && a.fl.stop != nil && a.fl.stop.Err() != nil:
		return errShutdown
	case err != nil:
		return err
	}
	if waited {
		d.WaitedMS = time.Since(began).Milliseconds()
		d.Started = time.Now().UTC()
		d.Note = ""
		log.Info().Int64("waited_ms", d.WaitedMS).Msg("deploy may start")
	}
	return nil
}

// unpaced reports whether a deploy of an app without a fleet policy may start at once: it
// is neither locked nor halted, or etcd cannot be reached (such an app deploys from its
// cache while etcd is down, and the lock cannot be checked then: the log says so). One
// round trip; when it is locked or halted, Acquire waits or says so.
func (a *Agent) unpaced(ctx context.Context, t fleet.Ticket, log zerolog.Logger) bool {
	lock, halt, err := a.fl.store.Check(ctx, t.App, t.Env, t.SHA)
	if errors.Is(err, fleet.ErrUnavailable) {
		log.Warn().Err(err).Msg("deploy lock not checked: etcd unreachable")
		return true
	}
	return err == nil && lock == nil && halt == nil
}

// supersedeWaiting cancels a waiting deploy (cancel) when a newer deploy of a pushed commit
// is queued for the app, until ctx ends. The function it returns waits for it to stop and
// returns the newer deploy, if one came.
func (a *Agent) supersedeWaiting(ctx context.Context, cancel context.CancelFunc, ap *app) func() *state.Deploy {
	var by *state.Deploy
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ap.wake:
				// The worker takes whatever is queued once this deploy ends, woken or not.
				ap.mu.Lock()
				p := ap.pending
				ap.mu.Unlock()
				if p != nil && (p.Kind == state.KindDeploy || p.Kind == state.KindReconcile) {
					by = p
					cancel()
					return
				}
			}
		}
	}()
	return func() *state.Deploy { <-done; return by }
}

// releaseSlot gives the deploy's fleet slot back once its final status is recorded: its
// success lets the next hosts go, its failure halts the commit when the app says so. etcd
// is retried for a while; past that, the slot goes with the lease if the host loses it.
func (a *Agent) releaseSlot(ap *app, d *state.Deploy) {
	a.registryChanged()
	slot := ap.slot
	ap.slot = nil
	if slot == nil {
		return
	}
	o := fleet.Abandoned
	switch d.Status {
	case state.StatusSucceeded:
		o = fleet.Succeeded
	case state.StatusFailed:
		o = fleet.Failed
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(30*time.Second, 2*a.fl.store.LeaseTTL()))
	defer cancel()
	if err := slot.Release(ctx, o, abbrev.FirstLine(d.Error)); err != nil {
		a.fl.log.Error().Err(err).Str("app", d.App).Str("deploy", d.ID).Msg("release fleet slot")
		return
	}
	if o == fleet.Failed && ap.cfg.Fleet != nil && ap.cfg.Fleet.Policy().HaltOnFailure {
		a.metrics.ops.fleetHalts.WithLabelValues(d.App).Inc() // this host's failure halts the commit fleet-wide
	}
}
