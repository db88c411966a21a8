package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/restart"
	"github.com/pushdeploy/pushdeploy/units"
)

// rolloutJournalLines is how many of an unhealthy instance's last journal lines the deploy
// error (and the bad release's reason) carries.
const rolloutJournalLines = 10

// healthChecks builds the health check of every instance of spec's services that have a
// health block, for the release in dir. An instance without one is not in the map: its
// unit's Settle (the installer's start check) is all it has to pass.
//
// config is the app's configuration as NAME=value pairs (its environment file), which its
// units read too.
func healthChecks(conn *sddbus.Conn, app, sha, dir string, spec *units.Spec, config []string) (map[string]restart.Instance, error) {
	out := map[string]restart.Instance{}
	for name, s := range spec.Services {
		if s.Health == nil {
			continue
		}
		h := s.Health
		rs := restart.Spec{HTTP: h.HTTP, TCP: h.TCP, Command: h.Command, WorkDir: s.WorkDir,
			Timeout: h.Timeout, Interval: h.Interval, MinHealthyTime: h.MinHealthyTime, HealthyDeadline: h.HealthyDeadline}
		for n := 1; n <= s.Instances; n++ {
			unit := units.UnitName(app, name, n)
			port := 0
			if s.Port > 0 {
				port = s.Port + n - 1
			}
			probe, err := restart.ProbeFor(rs, port, dir, probeEnv(spec, s, app, sha, dir, n, port, config))
			if err != nil {
				return nil, fmt.Errorf("services.%s.health: %w", name, err)
			}
			out[unit] = restart.Instance{Name: unit, Spec: rs, Probe: probe, State: unitState(conn, unit)}
		}
	}
	return out, nil
}

// probeEnv is the environment a command check of instance n runs with, in the order its
// unit applies them: the service's own (shared env, then the service's), the app's
// configuration (EnvironmentFile= overrides Environment=), then PORT and the PUSHDEPLOY_
// variables (which a configuration may not set).
func probeEnv(spec *units.Spec, s *units.Service, app, sha, dir string, n, port int, config []string) []string {
	var env []string
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, config...)
	if port > 0 {
		env = append(env, "PORT="+strconv.Itoa(port))
	}
	return append(env, "PUSHDEPLOY_APP="+app, "PUSHDEPLOY_SERVICE="+s.Name,
		"PUSHDEPLOY_INSTANCE="+strconv.Itoa(n), "PUSHDEPLOY_RELEASE_DIR="+dir, "PUSHDEPLOY_SHA="+sha)
}

// checkName says which check an instance failed, for the deploy error.
func checkName(s restart.Spec) string {
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

// unitState reads what restart.Wait watches of unit from the manager.
func unitState(conn *sddbus.Conn, unit string) func(ctx context.Context) (restart.UnitState, error) {
	return func(ctx context.Context) (restart.UnitState, error) {
		p, err := conn.GetUnitPropertiesContext(ctx, unit)
		if err != nil {
			return restart.UnitState{}, fmt.Errorf("read state of %s: %w", unit, err)
		}
		sp, err := conn.GetUnitTypePropertiesContext(ctx, unit, "Service")
		if err != nil {
			return restart.UnitState{}, fmt.Errorf("read service state of %s: %w", unit, err)
		}
		st := restart.UnitState{}
		st.ActiveState, _ = p["ActiveState"].(string)
		st.SubState, _ = p["SubState"].(string)
		st.NRestarts, _ = sp["NRestarts"].(uint32)
		st.MainPID, _ = sp["MainPID"].(uint32)
		if us, _ := p["ActiveEnterTimestamp"].(uint64); us > 0 {
			st.Since = time.UnixMicro(int64(us))
		}
		return st, nil
	}
}

// healthy returns the installer's health hook for the checks of one release: it waits for
// every checked instance of a batch at once, failing fast, and logs each verdict. An
// instance without a check passed the installer's Settle, which is its verdict. The error
// names every unhealthy instance, its check, the reason with the last check's answer or
// error, and its last journal lines.
func (a *Agent) healthy(checks map[string]restart.Instance, release string, log zerolog.Logger) func(context.Context, []string) error {
	return func(ctx context.Context, batch []string) error {
		var list []restart.Instance
		for _, unit := range batch {
			if c, ok := checks[unit]; ok {
				list = append(list, c)
				continue
			}
			log.Info().Str("unit", unit).Str("release", release).Str("verdict", "settled").Msg("instance healthy: no health check")
		}
		if len(list) == 0 {
			return nil
		}
		var errs []error
		for i, r := range restart.WaitAll(ctx, list, true) {
			if r.OK() {
				log.Info().Str("unit", r.Name).Str("release", release).Str("verdict", "healthy").
					Int("checks", r.Checks).Int64("took_ms", r.Took.Milliseconds()).Msg("instance healthy")
				continue
			}
			log.Warn().Str("unit", r.Name).Str("release", release).Str("verdict", "unhealthy").
				Str("reason", r.Reason).Str("last_error", r.LastError).Int("checks", r.Checks).
				Int64("took_ms", r.Took.Milliseconds()).Msg("instance unhealthy")
			if errors.Is(r.Err, restart.ErrBatchFailed) {
				continue // stopped because another instance failed, which says why
			}
			msg := fmt.Sprintf("%s: check %s: %s", r.Name, checkName(list[i].Spec), r.Reason)
			if r.LastError != "" && !strings.Contains(r.Reason, r.LastError) {
				msg += "; last failure: " + r.LastError
			}
			if lines := a.journal(context.WithoutCancel(ctx), r.Name, rolloutJournalLines); len(lines) > 0 {
				msg += fmt.Sprintf("; last %d journal lines:\n    %s", len(lines), strings.Join(lines, "\n    "))
			}
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", msg, r.Err))
			} else {
				errs = append(errs, errors.New(msg))
			}
		}
		return errors.Join(errs...)
	}
}

// autoRevert is the installer's AutoRevert for spec: a batch is put back when its service's
// rollout.auto_revert says so (batches never mix services).
func autoRevert(spec *units.Spec, app string) func([]string) bool {
	revert := map[string]bool{}
	for name, s := range spec.Services {
		for n := 1; n <= s.Instances; n++ {
			revert[units.UnitName(app, name, n)] = s.Rollout.AutoRevert
		}
	}
	return func(batch []string) bool {
		for _, u := range batch {
			if r, ok := revert[u]; ok && !r {
				return false
			}
		}
		return true
	}
}
