package rollout

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/health"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/units"
)

// Release is what the engine needs to know of one release of an app to plan its rollout
// and check its instances.
type Release struct {
	SHA  string
	Dir  string
	Spec *units.Spec
	// Config is the app's configuration as NAME=value (its environment file), which the
	// units read too, so a command check sees what the service sees.
	Config []string
}

// short is the release's abbreviated commit, for logs.
func (r Release) short() string { return abbrev.SHA(r.SHA) }

// checks builds the health check of every instance of r's services that have a health
// block. An instance without one is not in the map: settling is all it has to pass.
func (e *Engine) checks(app string, r Release) (map[string]health.Instance, error) {
	out := map[string]health.Instance{}
	for _, in := range units.InstancesOf(r.Spec, app) {
		h := in.Service.Health
		if h == nil {
			continue
		}
		spec := health.Spec{HTTP: h.HTTP, TCP: h.TCP, Command: h.Command, WorkDir: in.Service.WorkDir,
			Timeout: h.Timeout, Interval: h.Interval, MinHealthyTime: h.MinHealthyTime, HealthyDeadline: h.HealthyDeadline}
		probe, err := health.ProbeFor(spec, in.Port, r.Dir, probeEnv(r, app, in))
		if err != nil {
			return nil, fmt.Errorf("services.%s.health: %w", in.Service.Name, err)
		}
		unit := in.Unit
		out[unit] = health.Instance{Name: unit, Spec: spec, Probe: probe,
			State: func(ctx context.Context) (UnitState, error) { return e.Manager.State(ctx, unit) }}
	}
	return out, nil
}

// probeEnv is the environment a command check of instance in runs with, in the order its
// unit applies them: service.json's (shared env, the service's, PORT), the app's
// configuration (EnvironmentFile= overrides Environment=), then the PUSHDEPLOY_ variables
// (which a configuration may not set).
func probeEnv(r Release, app string, in units.Instance) []string {
	env := append(r.Spec.InstanceEnv(in), r.Config...)
	return append(env, "PUSHDEPLOY_APP="+app, "PUSHDEPLOY_SERVICE="+in.Service.Name,
		"PUSHDEPLOY_INSTANCE="+strconv.Itoa(in.N), "PUSHDEPLOY_RELEASE_DIR="+r.Dir, "PUSHDEPLOY_SHA="+r.SHA)
}

// checkName says which check an instance failed, for the error.
func checkName(s health.Spec) string {
	switch {
	case s.HTTP != "":
		return "http " + s.HTTP
	case s.TCP:
		return "tcp"
	case s.Command != nil:
		return fmt.Sprintf("command %q", s.Command)
	}
	return "unit state"
}

// checker is the CheckFunc for the checks of one release: it waits for every checked
// instance of a batch at once, failing fast, and logs each verdict. An instance without a
// check passed settling, which is its verdict. The error names every unhealthy instance,
// its check, the reason with the last check's answer or error, and its last journal lines.
func (e *Engine) checker(checks map[string]health.Instance, release string, log zerolog.Logger) CheckFunc {
	return func(ctx context.Context, batch []string) error {
		var list []health.Instance
		for _, unit := range batch {
			if c, ok := checks[unit]; ok {
				list = append(list, c)
				continue
			}
			log.Info().Str("unit", unit).Str("release", release).Str("verdict", "settled").Msg("instance healthy: no health check")
		}
		var errs []error
		for i, r := range health.WaitAll(ctx, list, true) {
			if r.OK() {
				log.Info().Str("unit", r.Name).Str("release", release).Str("verdict", "healthy").
					Int("checks", r.Checks).Int64("took_ms", r.Took.Milliseconds()).Msg("instance healthy")
				continue
			}
			// The verdict's time and counts; why goes into the error, reported once.
			log.Warn().Str("unit", r.Name).Str("release", release).Str("verdict", "unhealthy").
				Int("checks", r.Checks).Int64("took_ms", r.Took.Milliseconds()).Msg("instance unhealthy")
			if errors.Is(r.Err, health.ErrBatchFailed) {
				continue // stopped because another instance failed, which says why
			}
			msg := fmt.Sprintf("%s: check %s: %s", r.Name, checkName(list[i].Spec), r.Reason)
			if r.LastError != "" && !strings.Contains(r.Reason, r.LastError) {
				msg += "; last failure: " + r.LastError
			}
			lines, jerr := e.Manager.Journal(context.WithoutCancel(ctx), r.Name, JournalLines)
			msg += journalQuote(lines)
			err := errors.New(msg)
			if r.Err != nil {
				err = fmt.Errorf("%s: %w", msg, r.Err)
			}
			if jerr != nil {
				err = errors.Join(err, fmt.Errorf("read journal of %s: %w", r.Name, jerr))
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
}
