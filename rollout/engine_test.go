package rollout

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// fixture is an Engine on a fakeManager with a plan for app shop: one instance per batch
// unless a case says otherwise, checks that fail where the case says, a rotation.
type fixture struct {
	m    *fakeManager
	e    *Engine
	p    *Plan
	sick map[string]bool // "v2 web@2": its check fails
}

func newFixture(t *testing.T, instances int) *fixture {
	m := newFakeManager()
	f := &fixture{m: m, e: &Engine{Manager: m, Settle: 1, Poll: 1}, sick: map[string]bool{}}
	f.p = &Plan{App: "shop", Log: zerolog.New(zerolog.NewTestWriter(t)),
		Rotation: &fakeRotation{m: m, drained: map[string]bool{}}}
	for n := 1; n <= instances; n++ {
		f.p.Batches = append(f.p.Batches, []string{fmt.Sprintf("pushdeploy-shop-web@%d.service", n)})
	}
	f.p.Check = f.check("check")
	f.p.RevertCheck = f.check("revert-check")
	return f
}

// check is a CheckFunc that records "<what> web@1 v2" and fails where f.sick says.
func (f *fixture) check(what string) CheckFunc {
	return func(_ context.Context, batch []string) error {
		var errs []error
		for _, u := range batch {
			f.m.mu.Lock()
			key := f.m.units[u].version + " " + short(u)
			f.m.record(what + " " + short(u) + " " + f.m.units[u].version)
			f.m.mu.Unlock()
			if f.sick[key] {
				errs = append(errs, fmt.Errorf("%s: 503", key))
			}
		}
		return errors.Join(errs...)
	}
}

// deployed runs a first deploy of version with n instances and forgets its events.
func (f *fixture) deployed(t *testing.T, version string, n int) *Installed {
	t.Helper()
	p := *f.p
	p.Batches = newFixture(t, n).p.Batches
	got, err := f.e.Deploy(t.Context(), &p, release(version, n), nil)
	if err != nil {
		t.Fatalf("deploy %s: %v", version, err)
	}
	f.m.takeEvents()
	return got
}

func checkEvents(t *testing.T, got []string, want string) {
	t.Helper()
	w := strings.Split(strings.TrimSpace(want), "\n")
	for i := range w {
		w[i] = strings.TrimSpace(w[i])
	}
	if !reflect.DeepEqual(got, w) {
		t.Errorf("events:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(w, "\n      "))
	}
}

func checkErr(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("error: %v, want none", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one saying %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, err)
		}
	}
}

const (
	tmpl   = "pushdeploy-shop-web@.service"
	target = "pushdeploy-shop.target"
)

func TestEngine_Deploy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		prev, next  int // instances of v1 (0: first deploy) and of v2
		setup       func(f *fixture, cancel context.CancelFunc)
		wantEvents  string
		wantRunning []string
		wantErr     []string
		installed   func(prev, next *Installed) *Installed
	}{
		{
			name: "one batch after another, each drained, checked, back in rotation", prev: 2, next: 2,
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				check web@1 v2
				ready web@1
				drain web@2
				restart web@2 v2
				check web@2 v2
				ready web@2
				install
				enable ` + target + `
				start ` + target + ` v2`,
			wantRunning: []string{"web@1 v2", "web@2 v2"},
			installed:   func(_, next *Installed) *Installed { return next },
		},
		{
			name: "unhealthy batch: put back failed first, then earlier ones in reverse, each checked", prev: 3, next: 3,
			setup: func(f *fixture, _ context.CancelFunc) { f.sick["v2 web@2"] = true },
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				check web@1 v2
				ready web@1
				drain web@2
				restart web@2 v2
				check web@2 v2
				install +` + tmpl + `=v1 +` + target + `=v1
				drain web@2
				restart web@2 v1
				revert-check web@2 v1
				ready web@2
				drain web@1
				restart web@1 v1
				revert-check web@1 v1
				ready web@1`,
			wantRunning: []string{"web@1 v1", "web@2 v1", "web@3 v1"},
			wantErr:     []string{"batch 2 of 3: health check: v2 web@2: 503", "previous units put back and healthy"},
			installed:   func(prev, _ *Installed) *Installed { return prev },
		},
		{
			name: "instance exits at start: the error quotes its journal", prev: 1, next: 1,
			setup: func(f *fixture, _ context.CancelFunc) { f.m.exits["v2 web@1"] = true },
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				install +` + tmpl + `=v1 +` + target + `=v1
				drain web@1
				start web@1 v1
				revert-check web@1 v1
				ready web@1`,
			wantRunning: []string{"web@1 v1"},
			wantErr: []string{"restart pushdeploy-shop-web@1.service: not active", "(ActiveState failed, SubState failed, Result exit-code)",
				"last 1 journal lines:\n    web@1 v2 says boom"},
			installed: func(prev, _ *Installed) *Installed { return prev },
		},
		{
			name: "start job fails", prev: 1, next: 1,
			setup: func(f *fixture, _ context.CancelFunc) { f.m.jobFails["v2 web@1"] = true },
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				install +` + tmpl + `=v1 +` + target + `=v1
				drain web@1
				start web@1 v1
				revert-check web@1 v1
				ready web@1`,
			wantRunning: []string{"web@1 v1"},
			wantErr:     []string{"restart pushdeploy-shop-web@1.service: start job failed"},
			installed:   func(prev, _ *Installed) *Installed { return prev },
		},
		{
			name: "auto_revert off: halts where it is", prev: 3, next: 3,
			setup: func(f *fixture, _ context.CancelFunc) {
				f.sick["v2 web@2"] = true
				f.p.NoRevert = map[string]bool{"pushdeploy-shop-web@2.service": true}
			},
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				check web@1 v2
				ready web@1
				drain web@2
				restart web@2 v2
				check web@2 v2
				restore web@2`,
			wantRunning: []string{"web@1 v2", "web@2 v2", "web@3 v1"},
			wantErr:     []string{"auto_revert is off: rollout halted, not reverted: pushdeploy-shop-web@1.service, pushdeploy-shop-web@2.service keep"},
			installed:   func(_, next *Installed) *Installed { return next },
		},
		{
			name: "the release put back is unhealthy too", prev: 1, next: 1,
			setup: func(f *fixture, _ context.CancelFunc) { f.sick["v2 web@1"], f.sick["v1 web@1"] = true, true },
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				check web@1 v2
				install +` + tmpl + `=v1 +` + target + `=v1
				drain web@1
				restart web@1 v1
				revert-check web@1 v1
				restore web@1`,
			wantRunning: []string{"web@1 v1"},
			wantErr:     []string{"v2 web@1: 503", "previous units of shop put back, but not healthy: health check: v1 web@1: 503"},
			installed:   func(prev, _ *Installed) *Installed { return prev },
		},
		{
			name: "a stop fails while putting back: everything that may be there is returned", prev: 1, next: 2,
			setup: func(f *fixture, _ context.CancelFunc) {
				f.sick["v2 web@2"] = true
				f.m.fail["stop web@2"] = errBoom
			},
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				check web@1 v2
				ready web@1
				drain web@2
				start web@2 v2
				check web@2 v2
				drain web@2
				stop web@2
				install +` + tmpl + `=v1 +` + target + `=v1
				drain web@1
				restart web@1 v1
				revert-check web@1 v1
				ready web@1
				restore web@2`,
			wantRunning: []string{"web@1 v1", "web@2 v2"},
			wantErr:     []string{"v2 web@2: 503", "put previous units of shop back: boom"},
			installed: func(prev, next *Installed) *Installed {
				return &Installed{Files: prev.Files, Instances: next.Instances, Target: prev.Target}
			},
		},
		{
			name: "first deploy fails: what it started is stopped, its files removed", next: 2,
			setup: func(f *fixture, _ context.CancelFunc) { f.m.exits["v2 web@2"] = true },
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				start web@1 v2
				check web@1 v2
				ready web@1
				drain web@2
				start web@2 v2
				drain web@1
				stop web@1
				retire web@1
				drain web@2
				stop web@2
				retire web@2
				install -` + tmpl + ` -` + target,
			wantErr:   []string{"start pushdeploy-shop-web@2.service: not active"},
			installed: func(_, _ *Installed) *Installed { return nil },
		},
		{
			name: "cancelled between batches: put back as on a failure", prev: 2, next: 2,
			setup: func(f *fixture, cancel context.CancelFunc) {
				check := f.p.Check
				f.p.Check = func(ctx context.Context, batch []string) error { cancel(); return check(ctx, batch) }
			},
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				check web@1 v2
				ready web@1
				install +` + tmpl + `=v1 +` + target + `=v1
				drain web@1
				restart web@1 v1
				revert-check web@1 v1
				ready web@1`,
			wantRunning: []string{"web@1 v1", "web@2 v1"},
			wantErr:     []string{"stopped before batch 2 of 2: context canceled"},
			installed:   func(prev, _ *Installed) *Installed { return prev },
		},
		{
			name: "a drain fails: nothing of that batch restarts", prev: 2, next: 2,
			setup: func(f *fixture, _ context.CancelFunc) { f.m.fail["drain web@2"] = errBoom },
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				check web@1 v2
				ready web@1
				drain web@2
				install +` + tmpl + `=v1 +` + target + `=v1
				drain web@1
				restart web@1 v1
				revert-check web@1 v1
				ready web@1
				restore web@2`,
			wantRunning: []string{"web@1 v1", "web@2 v1"},
			wantErr:     []string{"batch 2 of 2: drain: boom"},
			installed:   func(prev, _ *Installed) *Installed { return prev },
		},
		{
			name: "scaled down: the instances that go away are drained, then stopped", prev: 3, next: 1,
			wantEvents: `
				install +` + tmpl + `=v2 +` + target + `=v2
				drain web@1
				restart web@1 v2
				check web@1 v2
				ready web@1
				drain web@2
				stop web@2
				retire web@2
				drain web@3
				stop web@3
				retire web@3
				install
				enable ` + target + `
				start ` + target + ` v2`,
			wantRunning: []string{"web@1 v2"},
			installed:   func(_, next *Installed) *Installed { return next },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.next)
			var prev *Installed
			if tt.prev > 0 {
				prev = f.deployed(t, "v1", tt.prev)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.setup != nil {
				tt.setup(f, cancel)
			}
			next := release("v2", tt.next)
			got, err := f.e.Deploy(ctx, f.p, next, prev)
			checkErr(t, err, tt.wantErr)
			checkEvents(t, f.m.takeEvents(), tt.wantEvents)
			if r := f.m.running(); !reflect.DeepEqual(r, tt.wantRunning) {
				t.Errorf("running: got %v, want %v", r, tt.wantRunning)
			}
			if want := tt.installed(prev, next); !reflect.DeepEqual(got, want) {
				t.Errorf("installed: got %+v, want %+v", got, want)
			}
		})
	}
}

func TestEngine_Deploy_refuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(p *Plan, next, prev *Installed)
		wantErr string
	}{
		{"an instance in no batch", func(p *Plan, _, _ *Installed) { p.Batches = p.Batches[:1] }, "rollout batches: 1 of 2 instances in no batch"},
		{"an instance in two batches", func(p *Plan, _, _ *Installed) { p.Batches[1] = p.Batches[0] }, "is not an instance, or is in two batches"},
		{"an empty batch", func(p *Plan, _, _ *Installed) { p.Batches = append(p.Batches, nil) }, "empty batch"},
		{"a file outside the unit directory", func(_ *Plan, next, _ *Installed) { next.Files[0].Name = "../evil.service" }, `file "../evil.service" is not a clean name`},
		{"a previous record naming another unit", func(_ *Plan, _, prev *Installed) { prev.Instances[0] = "sshd.service" }, `previous units: instance "sshd.service" is not a pushdeploy unit name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 2)
			prev := f.deployed(t, "v1", 2)
			next := release("v2", 2)
			tt.edit(f.p, next, prev)
			got, err := f.e.Deploy(t.Context(), f.p, next, prev)
			checkErr(t, err, []string{tt.wantErr})
			if ev := f.m.takeEvents(); len(ev) > 0 {
				t.Errorf("events: %v, want none: a refused deploy touches nothing", ev)
			}
			if got != prev {
				t.Errorf("installed: got %+v, want the previous record", got)
			}
		})
	}
}

func TestEngine_Restart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		putBack    bool
		noRevert   bool
		wantEvents string
		wantErr    []string
	}{
		{
			name: "with a put back: the one revert path, failed batch first", putBack: true,
			wantEvents: `
				drain web@1
				restart web@1 v1
				check web@1 v1
				ready web@1
				drain web@2
				restart web@2 v1
				check web@2 v1
				put back
				drain web@2
				restart web@2 v1
				revert-check web@2 v1
				ready web@2
				drain web@1
				restart web@1 v1
				revert-check web@1 v1
				ready web@1`,
			wantErr: []string{"restart units of shop: batch 2 of 3: health check: v1 web@2: 503", "put back, 2 batch(es) restarted on it and healthy"},
		},
		{
			name: "nothing to put back: halts",
			wantEvents: `
				drain web@1
				restart web@1 v1
				check web@1 v1
				ready web@1
				drain web@2
				restart web@2 v1
				check web@2 v1
				restore web@2`,
			wantErr: []string{"batch 2 of 3", "restart halted, later batches not restarted"},
		},
		{
			name: "auto_revert off: halts even with a put back", putBack: true, noRevert: true,
			wantEvents: `
				drain web@1
				restart web@1 v1
				check web@1 v1
				ready web@1
				drain web@2
				restart web@2 v1
				check web@2 v1
				restore web@2`,
			wantErr: []string{"restart halted"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 3)
			f.deployed(t, "v1", 3)
			bad := true // the environment the batches restart on is bad until put back
			check := f.p.Check
			f.p.Check = func(ctx context.Context, batch []string) error {
				err := check(ctx, batch)
				if bad && batch[0] == "pushdeploy-shop-web@2.service" {
					return errors.Join(err, errors.New("v1 web@2: 503"))
				}
				return err
			}
			if tt.putBack {
				f.p.PutBack = func(context.Context) error {
					f.m.mu.Lock()
					defer f.m.mu.Unlock()
					bad = false
					return f.m.record("put back")
				}
			}
			if tt.noRevert {
				f.p.NoRevert = map[string]bool{"pushdeploy-shop-web@2.service": true}
			}
			err := f.e.Restart(t.Context(), f.p)
			checkErr(t, err, tt.wantErr)
			checkEvents(t, f.m.takeEvents(), tt.wantEvents)
		})
	}
}

func TestEngine_Remove(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	prev := f.deployed(t, "v1", 2)
	f.m.fail["stop web@2"] = errBoom
	err := f.e.Remove(t.Context(), f.p, prev)
	checkErr(t, err, []string{"remove units of shop: boom"})
	checkEvents(t, f.m.takeEvents(), `
		stop `+target+`
		drain web@2
		stop web@2
		drain web@1
		stop web@1
		retire web@1
		disable `+target+`
		install -`+tmpl+` -`+target+`
		restore web@2`)
}

// TestEngine_instanceError_journalUnreadable: a journal that cannot be read is said, not
// left out silently.
func TestEngine_instanceError_journalUnreadable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	prev := f.deployed(t, "v1", 1)
	f.m.exits["v2 web@1"] = true
	f.m.fail["journal web@1"] = errBoom
	_, err := f.e.Deploy(t.Context(), f.p, release("v2", 1), prev)
	checkErr(t, err, []string{"not active", "read journal of pushdeploy-shop-web@1.service: boom"})
	if strings.Contains(err.Error(), "journal lines:") {
		t.Errorf("error promises journal lines it does not have: %v", err)
	}
}

// TestEngine_Redact: what the engine quotes of an instance's journal goes through Redact.
func TestEngine_Redact(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	prev := f.deployed(t, "v1", 1)
	f.m.exits["v2 web@1"] = true
	f.e.Redact = func(s string) string { return strings.ReplaceAll(s, "says boom", "<redacted>") }
	_, err := f.e.Deploy(t.Context(), f.p, release("v2", 1), prev)
	checkErr(t, err, []string{"not active", "journal lines:", "web@1 v2 <redacted>"})
	if strings.Contains(err.Error(), "says boom") {
		t.Errorf("error quotes the journal unmasked: %v", err)
	}
}

// TestEngine_Progress: Progress hears of every batch as it starts, the revert's included,
// the failed batch reverted first.
func TestEngine_Progress(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	prev := f.deployed(t, "v1", 3)
	f.sick["v2 web@2"] = true
	var got []Step
	f.e.Progress = func(s Step) { got = append(got, s) }
	if _, err := f.e.Deploy(t.Context(), f.p, release("v2", 3), prev); err == nil {
		t.Fatal("deploy with a sick batch succeeded")
	}
	want := []Step{
		{App: "shop", Batch: 1, Of: 3},
		{App: "shop", Batch: 2, Of: 3},
		{App: "shop", Batch: 1, Of: 2, Revert: true},
		{App: "shop", Batch: 2, Of: 2, Revert: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("steps:\n got %+v\nwant %+v", got, want)
	}
}
