package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/haproxy"
	"github.com/pushdeploy/pushdeploy/units"
)

// HAProxyUpTimeout bounds how long an instance that passed its health check may take to be
// up in haproxy (its own health check) once set ready.
const HAProxyUpTimeout = 30 * time.Second

// HAProxy is where an app's instances are in haproxy: apps.<app>.haproxy of the agent's
// configuration.
type HAProxy struct {
	// Socket is the admin socket's path.
	Socket  string
	Backend string
	// Server is the template of a server's name (see haproxy.ServerName).
	Server string
	// DrainTimeout bounds how long a drain waits for an instance's sessions to end.
	DrainTimeout time.Duration
}

// rotation takes an app's instances out of haproxy's rotation around their restarts: drain
// before a batch restarts or stops, ready (and up) once it is healthy. It remembers every
// server it drained and has not put back, so that Restore can put them back whatever
// happened.
type rotation struct {
	cfg     HAProxy
	ha      *haproxy.Client
	servers map[string]string // instance unit → haproxy server
	log     zerolog.Logger

	mu      sync.Mutex
	drained map[string]bool
}

// newRotation names the haproxy server of every instance of specs (the release's first,
// then the previous release's, for a revert and for instances that go away). A service
// with several instances needs {instance} or {port} in the template, and no two instances
// may share a server.
func newRotation(cfg HAProxy, app string, specs []*units.Spec, log zerolog.Logger) (*rotation, error) {
	r := &rotation{cfg: cfg, ha: &haproxy.Client{Socket: cfg.Socket}, servers: map[string]string{},
		log: log.With().Str("backend", cfg.Backend).Logger(), drained: map[string]bool{}}
	perInstance := strings.Contains(cfg.Server, "{instance}") || strings.Contains(cfg.Server, "{port}")
	owner := map[string]string{}
	for _, spec := range specs {
		for _, in := range units.InstancesOf(spec, app) {
			name := in.Service.Name
			if in.Service.Instances > 1 && !perInstance {
				return nil, fmt.Errorf("apps.%s.haproxy.server: service %s has %d instances: the template %q needs {instance} or {port}", app, name, in.Service.Instances, cfg.Server)
			}
			if _, ok := r.servers[in.Unit]; ok {
				continue
			}
			server, err := haproxy.ServerName(cfg.Server, name, in.N, in.Port)
			if err != nil {
				return nil, fmt.Errorf("apps.%s.haproxy.server: service %s: %w", app, name, err)
			}
			if other, ok := owner[server]; ok && other != in.Unit {
				return nil, fmt.Errorf("apps.%s.haproxy.server: %s and %s are both server %s: add {service} to the template", app, other, in.Unit, server)
			}
			owner[server] = in.Unit
			r.servers[in.Unit] = server
		}
	}
	return r, nil
}

// Drain drains every instance of batch at once, each bounded by the drain timeout. A drain
// that times out is logged and the restart goes on (the sessions left are cut); any other
// error (haproxy unreachable, unknown server) fails the batch before anything restarts.
func (r *rotation) Drain(ctx context.Context, batch []string) error {
	return r.each(batch, func(unit, server string) error {
		r.mu.Lock()
		r.drained[server] = true
		r.mu.Unlock()
		begin := time.Now()
		err := r.ha.Drain(ctx, r.cfg.Backend, server, r.cfg.DrainTimeout)
		switch {
		case errors.Is(err, haproxy.ErrDrainTimeout):
			r.log.Warn().Str("unit", unit).Str("server", server).Err(err).Msg("haproxy drain timed out, going on")
		case err != nil:
			return err
		default:
			r.log.Info().Str("unit", unit).Str("server", server).Int64("took_ms", time.Since(begin).Milliseconds()).Msg("haproxy server drained")
		}
		return nil
	})
}

// Ready puts every instance of batch back in rotation and waits until haproxy finds each up.
func (r *rotation) Ready(ctx context.Context, batch []string) error {
	return r.each(batch, func(unit, server string) error {
		begin := time.Now()
		if err := r.ha.Ready(ctx, r.cfg.Backend, server); err != nil {
			return err
		}
		r.mu.Lock()
		delete(r.drained, server)
		r.mu.Unlock()
		if err := r.ha.WaitUp(ctx, r.cfg.Backend, server, HAProxyUpTimeout); err != nil {
			return err
		}
		r.log.Info().Str("unit", unit).Str("server", server).Int64("took_ms", time.Since(begin).Milliseconds()).Msg("haproxy server ready and up")
		return nil
	})
}

// each runs f for the server of every instance of batch at once (an instance with no
// server is skipped) and joins the errors.
func (r *rotation) each(batch []string, f func(unit, server string) error) error {
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for i, unit := range batch {
		if server, ok := r.servers[unit]; ok {
			wg.Go(func() { errs[i] = f(unit, server) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Retire sets the servers of batch to maintenance, where they stay: their instances are
// gone. haproxy then sends them nothing at all (drain still lets persistent clients
// through) and stops checking them. One that cannot be set is logged: it stays drained and
// down, and no caller could do more.
func (r *rotation) Retire(ctx context.Context, batch []string) {
	r.mu.Lock()
	for _, unit := range batch {
		delete(r.drained, r.servers[unit])
	}
	r.mu.Unlock()
	r.each(batch, func(unit, server string) error {
		if err := r.ha.SetState(ctx, r.cfg.Backend, server, haproxy.StateMaint); err != nil {
			r.log.Warn().Str("unit", unit).Str("server", server).Err(err).Msg("haproxy server of a retired instance left drained")
			return nil
		}
		r.log.Info().Str("unit", unit).Str("server", server).Msg("haproxy server in maintenance: instance retired")
		return nil
	})
}

// Restore sets every server still drained back to ready, even when ctx is cancelled: a
// failed, reverted, halted or interrupted rollout never leaves a server out of rotation. A
// server it cannot put back is logged: there is no caller left to return it to.
func (r *rotation) Restore(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	r.mu.Lock()
	left := make([]string, 0, len(r.drained))
	for s := range r.drained {
		left = append(left, s)
	}
	r.mu.Unlock()
	slices.Sort(left)
	for _, server := range left {
		if err := r.ha.Ready(ctx, r.cfg.Backend, server); err != nil {
			r.log.Error().Str("server", server).Err(err).Msg("put haproxy server back in rotation")
			continue
		}
		r.mu.Lock()
		delete(r.drained, server)
		r.mu.Unlock()
		r.log.Info().Str("server", server).Msg("haproxy server put back in rotation")
	}
}
