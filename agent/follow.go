package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/logtail"
	"github.com/pushdeploy/pushdeploy/state"
	"github.com/pushdeploy/pushdeploy/ui"
)

// follow emits the log of deploy id of app from byte offset from on, as it is written, until
// the deploy is final and its logger closed, and returns the final record.
func (a *Agent) follow(ctx context.Context, app, id string, from int64, emit func([]byte, int64) error) (*state.Deploy, error) {
	if _, ok := a.apps[app]; !ok {
		return nil, fmt.Errorf("app %q: %w", app, state.ErrNotFound)
	}
	var final *state.Deploy
	err := logtail.Follow(ctx, logtail.Options{Hub: a.view.logs, Key: id, Path: a.dirs.DeployLog(app, id), From: from, Emit: emit,
		Finished: func() (bool, error) {
			d, err := a.state.Get(app, id)
			final = d
			return err == nil && d.Status.Final(), err
		}})
	if err != nil {
		return nil, err
	}
	return final, nil
}

// Follow emits the log of a deploy while the agent is down: what the file holds from
// offset from on. A deploy that is not final cannot be followed.
func (l *Local) Follow(_ context.Context, app, id string, from int64, emit func([]byte, int64) error) (*state.Deploy, error) {
	d, err := l.state.Get(app, id)
	if err != nil {
		return nil, err
	}
	err = logtail.Follow(context.Background(), logtail.Options{Hub: logtail.NewHub(), Key: id,
		Path: l.cfg.Layout().DeployLog(app, id), From: from, Emit: emit,
		Finished: func() (bool, error) { return true, nil }})
	if err != nil {
		return nil, err
	}
	if !d.Status.Final() {
		return d, fmt.Errorf("deploy %s is %s, but the agent is not running: nothing more will be written until it starts", id, d.Status)
	}
	return d, nil
}

// logWriter is what a deploy's log file is written through: it tells the followers of
// the deploy of each line and watches the lines for what the status page and the
// notifications need (health answers; a revert; a halt).
func (a *Agent) logWriter(d *state.Deploy, f io.Writer) (io.Writer, func()) {
	return a.view.logs.Writer(d.ID, &watcher{w: f, d: d.ID, health: a.view.health, out: a.view.outcomes})
}

// watcher reads each line as it goes by. zerolog writes one line per Write.
type watcher struct {
	w      io.Writer
	d      string
	health *verdicts
	out    *outcomes
}

var (
	markVerdict = []byte(`"verdict":`)
	markRevert  = [][]byte{[]byte(`"message":"deploy failed, putting previous units back"`),
		[]byte(`"message":"configuration unhealthy: putting the previous one back"`)}
	markHalt = []byte(`"message":"deploy failed, rollout halted without revert"`)
)

func (w *watcher) Write(p []byte) (int, error) {
	switch {
	case bytes.Contains(p, markVerdict):
		var v struct {
			Unit, Release, Verdict string
			Checks                 int
			TookMS                 int64 `json:"took_ms"`
			Time                   time.Time
		}
		if json.Unmarshal(p, &v) == nil && v.Unit != "" {
			w.health.set(v.Unit, ui.Verdict{Verdict: v.Verdict, Checks: v.Checks, Took: time.Duration(v.TookMS) * time.Millisecond, At: v.Time, Release: v.Release})
		}
	case bytes.Contains(p, markHalt):
		w.out.mark(w.d, notifyHalted)
	case bytes.Contains(p, markRevert[0]) || bytes.Contains(p, markRevert[1]):
		w.out.mark(w.d, notifyReverted)
	}
	return w.w.Write(p)
}

// verdicts are the last health answers seen, by instance unit.
type verdicts struct {
	mu sync.Mutex
	m  map[string]ui.Verdict
}

func newVerdicts() *verdicts { return &verdicts{m: map[string]ui.Verdict{}} }

func (v *verdicts) set(unit string, x ui.Verdict) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m[unit] = x
}

func (v *verdicts) get(unit string) *ui.Verdict {
	v.mu.Lock()
	defer v.mu.Unlock()
	if x, ok := v.m[unit]; ok {
		return &x
	}
	return nil
}

// outcomes are what the logs of running deploys said of their rollouts: reverted or halted.
type outcomes struct {
	mu sync.Mutex
	m  map[string]string
}

func newOutcomes() *outcomes { return &outcomes{m: map[string]string{}} }

func (o *outcomes) mark(deploy, what string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m[deploy] != notifyHalted { // a halt is the last word
		o.m[deploy] = what
	}
}

// take returns what was marked for deploy and forgets it.
func (o *outcomes) take(deploy string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	what := o.m[deploy]
	delete(o.m, deploy)
	return what
}

// findDeploy finds a deploy by id whichever app it belongs to.
func (a *Agent) findDeploy(id string) (*state.Deploy, error) {
	for _, name := range a.appNames() {
		d, err := a.state.Get(name, id)
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, state.ErrNotFound) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("deploy %s: %w", id, state.ErrNotFound)
}

// readLog reads a deploy's log; a log not written yet is empty.
func (a *Agent) readLog(app, id string) ([]byte, error) {
	b, err := os.ReadFile(a.dirs.DeployLog(app, id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read deploy log: %w", err)
	}
	return b, nil
}
