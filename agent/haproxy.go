package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/restart"
	"github.com/pushdeploy/pushdeploy/units"
)

// haproxyUpTimeout bounds how long an instance that passed its health check may take to be
// up in haproxy (its own health check) once set ready.
const haproxyUpTimeout = 30 * time.Second

// rotation takes an app's instances out of haproxy's rotation around their restarts: drain
// before a batch restarts, ready (and up) once it is healthy. It remembers every server it
// drained and has not put back, so that restore can put them back whatever happened.
type rotation struct {
	cfg     *config.HAProxy
	ha      *restart.HAProxy
	servers map[string]string // instance unit → haproxy server
	log     zerolog.Logger

	mu      sync.Mutex
	drained map[string]bool
}

// newRotation names the haproxy server of every instance of specs (the release's first,
// then the previous release's, for a revert). A service with several instances needs
// {instance} or {port} in the template, and no two instances may share a server.
func newRotation(cfg *config.HAProxy, app string, specs []*units.Spec, log zerolog.Logger) (*rotation, error) {
	r := &rotation{cfg: cfg, ha: &restart.HAProxy{Socket: cfg.Socket}, servers: map[string]string{},
		log: log.With().Str("backend", cfg.Backend).Logger(), drained: map[string]bool{}}
	perInstance := strings.Contains(cfg.Server, "{instance}") || strings.Contains(cfg.Server, "{port}")
	owner := map[string]string{}
	for _, spec := range specs {
		for name, s := range spec.Services {
			if s.Instances > 1 && !perInstance {
				return nil, fmt.Errorf("apps.%s.haproxy.server: service %s has %d instances: the template %q needs {instance} or {port}", app, name, s.Instances, cfg.Server)
			}
			for n := 1; n <= s.Instances; n++ {
				unit := units.UnitName(app, name, n)
				if _, ok := r.servers[unit]; ok {
					continue
				}
				port := 0
				if s.Port > 0 {
					port = s.Port + n - 1
				}
				server, err := restart.ServerName(cfg.Server, name, n, port)
				if err != nil {
					return nil, fmt.Errorf("apps.%s.haproxy.server: service %s: %w", app, name, err)
				}
				if other, ok := owner[server]; ok && other != unit {
					return nil, fmt.Errorf("apps.%s.haproxy.server: %s and %s are both server %s: add {service} to the template", app, other, unit, server)
				}
				owner[server] = unit
				r.servers[unit] = server
			}
		}
	}
	return r, nil
}

// drain is the installer's BeforeBatch: it drains every instance of batch at once, each
// bounded by drain_timeout. A drain that times out is logged and the restart goes on (the
// sessions left are cut); any other error (haproxy unreachable, unknown server) fails the
// batch before anything restarts.
func (r *rotation) drain(ctx context.Context, batch []string) error {
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for i, unit := range batch {
		server, ok := r.servers[unit]
		if !ok {
			continue
		}
		r.mu.Lock()
		r.drained[server] = true
		r.mu.Unlock()
		wg.Go(func() {
			begin := time.Now()
			err := r.ha.Drain(ctx, r.cfg.Backend, server, r.cfg.DrainTimeout)
			switch {
			case errors.Is(err, restart.ErrDrainTimeout):
				r.log.Warn().Str("unit", unit).Str("server", server).Err(err).Msg("haproxy drain timed out, restarting anyway")
			case err != nil:
				errs[i] = err
			default:
				r.log.Info().Str("unit", unit).Str("server", server).Int64("took_ms", time.Since(begin).Milliseconds()).Msg("haproxy server drained")
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ready puts every instance of batch back in rotation and waits until haproxy finds each up.
func (r *rotation) ready(ctx context.Context, batch []string) error {
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for i, unit := range batch {
		server, ok := r.servers[unit]
		if !ok {
			continue
		}
		wg.Go(func() {
			begin := time.Now()
			if err := r.ha.Ready(ctx, r.cfg.Backend, server); err != nil {
				errs[i] = err
				return
			}
			r.mu.Lock()
			delete(r.drained, server)
			r.mu.Unlock()
			if err := r.ha.WaitUp(ctx, r.cfg.Backend, server, haproxyUpTimeout); err != nil {
				errs[i] = err
				return
			}
			r.log.Info().Str("unit", unit).Str("server", server).Int64("took_ms", time.Since(begin).Milliseconds()).Msg("haproxy server ready and up")
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// healthy wraps a health hook (nil: healthy once settled): once it finds a batch healthy,
// the batch goes back in rotation, and an instance haproxy does not find up fails it.
func (r *rotation) healthy(next func(context.Context, []string) error) func(context.Context, []string) error {
	return func(ctx context.Context, batch []string) error {
		if next != nil {
			if err := next(ctx, batch); err != nil {
				return err
			}
		}
		return r.ready(ctx, batch)
	}
}

// restore sets every server still drained back to ready, even when ctx is cancelled: a
// failed, reverted, halted or interrupted rollout never leaves a server out of rotation.
func (r *rotation) restore(ctx context.Context) {
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
