package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// DefaultStatusInterval is the least time between two STATUS= messages: changes in
// between are coalesced into the newest, so a burst of webhooks costs one datagram.
const DefaultStatusInterval = 100 * time.Millisecond

// Check is one liveness check of the watchdog.
type Check struct {
	// Name says what is checked, in the error of a failed round ("webhook", "state").
	Name string
	// Func returns nil when what it checks is live. It must return once ctx ends (the
	// round's deadline). One that blocks anyway holds up every later round, and so the
	// pings: systemd then restarts the service, which is what a wedged part calls for.
	Func func(ctx context.Context) error
}

// Supervisor sends a service's sd_notify messages from one loop (Run): READY=1, then
// STATUS= whenever the status changes, WATCHDOG=1 after every round of checks that all
// pass, and STOPPING=1. New sets its tunables; set Watchdog and Checks before Run.
type Supervisor struct {
	// Watchdog is the unit's watchdog timeout (WATCHDOG_USEC). Zero sends no pings and
	// runs no checks. Otherwise a round of checks runs every Watchdog/2, as
	// sd_watchdog_enabled(3) advises, and WATCHDOG=1 follows a round that passed; a
	// round that fails, or that ends past its deadline, sends nothing, so systemd restarts
	// the service after one Watchdog without a passing round.
	Watchdog time.Duration
	// CheckTimeout bounds one round of checks; zero means Watchdog/4, so that a passing
	// round pings well within its half of the watchdog timeout.
	CheckTimeout time.Duration
	// Checks are run in order; the first that fails ends the round.
	Checks []Check
	// StatusInterval is the least time between two STATUS= messages.
	StatusInterval time.Duration

	n        Notifier
	status   func() string
	log      zerolog.Logger
	changed  chan struct{}
	stopping atomic.Bool

	mu         sync.Mutex // serialises sends: Run's and Stopping's
	lastStatus string
	failing    bool // the last send failed: the next failure is not logged again
}

// New returns a Supervisor that sends through n, and asks status (which must be safe to call
// from any goroutine, and cheap) what the service does. It sends nothing before Run.
func New(n Notifier, status func() string, log zerolog.Logger) *Supervisor {
	return &Supervisor{
		StatusInterval: DefaultStatusInterval,
		n:              n,
		status:         status,
		log:            log,
		changed:        make(chan struct{}, 1),
	}
}

// Changed says the status may have changed: Run asks for it again, at most once per
// StatusInterval, and sends it if it differs from the last one sent. It never blocks.
func (s *Supervisor) Changed() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Stopping sends STOPPING=1 with the status: the service begins to shut down. Pings end
// with it (systemd applies TimeoutStopSec= from then on, not the watchdog); status changes
// are still sent until Run returns, so a drain shows what it waits for.
func (s *Supervisor) Stopping() {
	if s.stopping.Swap(true) {
		return
	}
	st := oneLine(s.status())
	s.send(daemon.SdNotifyStopping+"\nSTATUS="+st, st)
}

// Run sends READY=1 with the status, then until ctx ends keeps the status current and,
// with a Watchdog, runs the checks and pings while they pass, until Stopping. When ctx ends
// it sends STOPPING=1 if Stopping has not, and returns.
//
// It returns an error only when READY=1 cannot be sent: systemd would never see the service
// start. A later message that cannot be sent is logged (once, until one goes through), and
// a failed round of checks is logged when the checks start failing and when they pass again.
func (s *Supervisor) Run(ctx context.Context) error {
	st := oneLine(s.status())
	if err := s.n.Notify(daemon.SdNotifyReady + "\nSTATUS=" + st); err != nil {
		return err
	}
	s.mu.Lock()
	s.lastStatus = st
	s.mu.Unlock()
	var tick <-chan time.Time
	if s.Watchdog > 0 {
		t := time.NewTicker(s.Watchdog / 2)
		defer t.Stop()
		tick = t.C
	}
	var (
		throttle <-chan time.Time // set while within StatusInterval of the last STATUS sent
		pending  bool             // a change came in meanwhile
		healthy  = true
	)
	for {
		select {
		case <-ctx.Done():
			s.Stopping()
			return nil
		case <-s.changed:
			if throttle != nil {
				pending = true
				continue
			}
			s.sendStatus()
			throttle = time.After(s.StatusInterval)
		case <-throttle:
			throttle = nil
			if pending {
				pending = false
				s.sendStatus()
				throttle = time.After(s.StatusInterval)
			}
		case <-tick:
			if s.stopping.Load() {
				continue
			}
			err := s.round(ctx)
			switch {
			case err == nil && !healthy:
				s.log.Info().Msg("watchdog checks pass again")
			case err != nil && healthy:
				s.log.Error().Err(err).Dur("watchdog", s.Watchdog).Msg("watchdog check failed: no pings until it passes")
			}
			healthy = err == nil
			if healthy && !s.stopping.Load() {
				s.send(daemon.SdNotifyWatchdog, "")
			}
		}
	}
}

// round runs the checks once, within CheckTimeout.
func (s *Supervisor) round(ctx context.Context) error {
	timeout := s.CheckTimeout
	if timeout <= 0 {
		timeout = s.Watchdog / 4
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, c := range s.Checks {
		err := c.Func(ctx)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err() // passed, but too late to count
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: no answer within %s: %w", c.Name, timeout, err)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return nil
}

// sendStatus sends the status if it changed since the last one sent.
func (s *Supervisor) sendStatus() {
	st := oneLine(s.status())
	s.mu.Lock()
	same := st == s.lastStatus
	s.mu.Unlock()
	if !same {
		s.send("STATUS="+st, st)
	}
}

// send sends msg, and records status (when not empty) as the last one sent once it went.
func (s *Supervisor) send(msg, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.n.Notify(msg); err != nil {
		if !s.failing {
			s.log.Warn().Err(err).Msg("tell systemd")
		}
		s.failing = true
		return
	}
	s.failing = false
	if status != "" {
		s.lastStatus = status
	}
}

// oneLine keeps a status to one line: a newline would start another assignment.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
