package agent

import (
	"io"
	"time"

	"github.com/rs/zerolog"
)

// newLogger builds the agent's loggers. Each line carries a millisecond UTC timestamp of its
// own (zerolog's Timestamp would use the package-global format, in whole seconds): a deploy
// takes tens of milliseconds, and its log should show where they went.
func newLogger(w io.Writer, level zerolog.Level) zerolog.Context {
	return zerolog.New(w).Level(level).Hook(stamp{}).With()
}

type stamp struct{}

func (stamp) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}

// component starts the logger of one part of the agent (fleet, config, reconcile, ui):
// the agent's own logger already carries component=agent, and zerolog would repeat the
// key rather than replace it.
func (a *Agent) component(name string) zerolog.Context {
	return newLogger(a.out, a.log.GetLevel()).Str("component", name)
}
