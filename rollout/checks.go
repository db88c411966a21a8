package rollout

import (
	"context"
	"errors"
	"fmt"
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
}

// short is the release's abbreviated commit, for logs.
func (r Release) short() string { return abbrev.SHA(r.SHA) }

// checks builds the health check of every instance of r's services that have a health
// block. An instance without one is not in the map: settling is all it has to pass. A
// command check runs as the instance's check unit (unitCheck), never in the agent.
func (e *Engine) checks(app string, r Release) (map[string]health.Instance, error) {
	out := map[string]health.Instance{}
	for _, in := range units.InstancesOf(r.Spec, app) {
		h := in.Service.Health
		if h == nil {
			continue
		}
		spec := health.Spec{HTTP: h.HTTP, TCP: h.TCP, Command: h.Command,
			Timeout: h.Timeout, Interval: h.Interval, MinHealthyTime: h.MinHealthyTime, HealthyDeadline: h.HealthyDeadline}
		checkUnit := units.CheckUnitName(app, in.Service.Name, in.N)
		probe, err := health.ProbeFor(spec, in.Port, func(argv []string) health.Probe {
			return &unitCheck{m: e.Manager, journal: e.journal, unit: checkUnit, argv: argv}
		})
		if err != nil {
			return nil, fmt.Errorf("services.%s.health: %w", in.Service.Name, err)
		}
		unit := in.Unit
		out[unit] = health.Instance{Name: unit, Spec: spec, Probe: probe,
			State: func(ctx context.Context) (UnitState, error) { return e.Manager.State(ctx, unit) }}
	}
	return out, nil
}

// unitCheck is a command health check run as the instance's check unit, which the release's
// units define (units.CheckUnitName): a oneshot with the service's user, environment and
// sandbox, bounded by the check's timeout. A check is the release's code: running it as a
// unit is what keeps it from acting with the agent's rights.
type unitCheck struct {
	m       Manager
	journal func(ctx context.Context, unit string) ([]string, error) // Engine.journal
	unit    string
	argv    []string // for messages: what service.json says
}

func (c *unitCheck) String() string { return fmt.Sprintf("command %q", c.argv) }

// Check starts the check unit and waits for its job: "done" (the command exited 0) passes.
// A failed job is reported with the unit's Result and its last journal lines (the
// command's output), and the unit is stopped, which resets its failed state: a failed check
// leaves nothing failed behind. When ctx ends first (the check's timeout, or the rollout
// stopping) the unit is stopped, so no check outlives its time.
func (c *unitCheck) Check(ctx context.Context) error {
	what := fmt.Sprintf("%s in %s", c, c.unit)
	limit := health.TimeLeft(ctx)
	err := c.m.Start(ctx, c.unit)
	if err == nil {
		return nil
	}
	bg := context.WithoutCancel(ctx)
	if ctx.Err() != nil {
		err = health.ProbeError(ctx, what, limit, ctx.Err())
		if serr := c.m.Stop(bg, c.unit); serr != nil {
			err = errors.Join(err, serr)
		}
		return err
	}
	je, ok := errors.AsType[*JobError](err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	msg := fmt.Sprintf("%s: job %s", what, je.Result)
	var errs []error
	if st, err := c.m.State(bg, c.unit); err != nil {
		errs = append(errs, err)
	} else if st.Result != "" {
		msg += fmt.Sprintf(" (Result %s)", st.Result)
	}
	lines, err := c.journal(bg, c.unit)
	if err != nil {
		errs = append(errs, fmt.Errorf("read journal of %s: %w", c.unit, err))
	}
	errs = append([]error{errors.New(msg + journalQuote(lastRun(lines, c.unit)))}, errs...)
	if err := c.m.Stop(bg, c.unit); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// lastRun keeps the journal lines of unit's last run: those from the manager's last
// "Starting <unit>…" line on, when there is one (a check unit runs every interval, and the
// lines of earlier runs only repeat).
func lastRun(lines []string, unit string) []string {
	for i := len(lines) - 1; i > 0; i-- {
		if strings.HasPrefix(lines[i], "Starting "+unit) {
			return lines[i:]
		}
	}
	return lines
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
			// The reason and the last failure quote the instance's answer.
			msg := fmt.Sprintf("%s: check %s: %s", r.Name, checkName(list[i].Spec), e.redact(r.Reason))
			if r.LastError != "" && !strings.Contains(r.Reason, r.LastError) {
				msg += "; last failure: " + e.redact(r.LastError)
			}
			lines, jerr := e.journal(context.WithoutCancel(ctx), r.Name)
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
