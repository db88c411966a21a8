package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/pushdeploy/pushdeploy/units"
)

// fakeManager is a service manager in memory. An instance runs the version named by the
// content of its template's file when it (re)starts. What goes wrong is set per version
// and instance: a start job that fails, or an instance that exits right after its job. A
// check unit (units.CheckUnitName) is a oneshot: its start job is done and it is inactive
// again, or it failed (checkFails). Every call is recorded as an event, in a short form
// ("restart web@1 v2", "start web.check@1 v2").
type fakeManager struct {
	mu      sync.Mutex
	files   map[string]string
	units   map[string]*fakeUnit
	enabled map[string]bool
	events  []string

	jobFails   map[string]bool  // "v2 web@1": its start job fails
	exits      map[string]bool  // "v2 web@1": exits right after its job
	checkFails map[string]bool  // "v2 web.check@1": the check unit's command exits non-zero
	checkHangs map[string]bool  // "v2 web.check@1": its start job waits until ctx ends
	fail       map[string]error // an event ("stop web@3", "install") that fails
}

type fakeUnit struct {
	active   bool
	version  string
	restarts uint32
}

func newFakeManager() *fakeManager {
	return &fakeManager{files: map[string]string{}, units: map[string]*fakeUnit{}, enabled: map[string]bool{},
		jobFails: map[string]bool{}, exits: map[string]bool{}, checkFails: map[string]bool{}, checkHangs: map[string]bool{}, fail: map[string]error{}}
}

// short is a unit's name in events: "web@1" for pushdeploy-shop-web@1.service.
func short(unit string) string {
	s := strings.TrimPrefix(unit, "pushdeploy-shop-")
	return strings.TrimSuffix(s, ".service")
}

// record adds an event and returns the failure set for it, if any.
func (m *fakeManager) record(event string) error {
	m.events = append(m.events, event)
	return m.fail[event]
}

func (m *fakeManager) Install(_ context.Context, files []File, remove []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var parts []string
	for _, f := range files {
		parts = append(parts, "+"+f.Name+"="+f.Content)
	}
	for _, r := range remove {
		parts = append(parts, "-"+r)
	}
	slices.Sort(parts)
	if err := m.record(strings.Join(append([]string{"install"}, parts...), " ")); err != nil {
		return err
	}
	for _, f := range files {
		m.files[f.Name] = f.Content
	}
	for _, r := range remove {
		delete(m.files, r)
	}
	return nil
}

// version is what an instance runs once (re)started: its template file's content.
func (m *fakeManager) version(unit string) (string, bool) {
	at := strings.Index(unit, "@")
	if at < 0 {
		v, ok := m.files[unit]
		return v, ok
	}
	v, ok := m.files[unit[:at+1]+".service"]
	return v, ok
}

func (m *fakeManager) start(ctx context.Context, op, unit string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.version(unit)
	if err := m.record(op + " " + short(unit) + " " + v); err != nil {
		return err
	}
	if m.checkHangs[v+" "+short(unit)] {
		m.mu.Unlock()
		<-ctx.Done()
		m.mu.Lock()
		return fmt.Errorf("%s %s: %w", op, unit, context.Cause(ctx))
	}
	if !ok {
		return &JobError{Op: op, Unit: unit, Result: "failed"}
	}
	u := m.units[unit]
	if u == nil {
		u = &fakeUnit{}
		m.units[unit] = u
	}
	u.version, u.active, u.restarts = v, true, 0
	key := v + " " + short(unit)
	if strings.Contains(unit, ".check@") {
		if m.checkFails[key] {
			u.active = false
			return &JobError{Op: op, Unit: unit, Result: "failed"}
		}
		delete(m.units, unit) // a oneshot that exited 0: inactive, unloaded
		return nil
	}
	if m.jobFails[key] {
		u.active = false
		return &JobError{Op: op, Unit: unit, Result: "failed"}
	}
	if m.exits[key] {
		u.active = false
	}
	return nil
}

func (m *fakeManager) Start(ctx context.Context, unit string) error {
	return m.start(ctx, "start", unit)
}
func (m *fakeManager) Restart(ctx context.Context, unit string) error {
	return m.start(ctx, "restart", unit)
}

func (m *fakeManager) Stop(_ context.Context, unit string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.record("stop " + short(unit)); err != nil {
		return err
	}
	delete(m.units, unit)
	return nil
}

func (m *fakeManager) Enable(_ context.Context, target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.record("enable " + target); err != nil {
		return err
	}
	m.enabled[target] = true
	return nil
}

func (m *fakeManager) Disable(_ context.Context, target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.record("disable " + target); err != nil {
		return err
	}
	delete(m.enabled, target)
	return nil
}

func (m *fakeManager) State(_ context.Context, unit string) (UnitState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail["state "+short(unit)]; err != nil {
		return UnitState{}, err
	}
	u := m.units[unit]
	switch {
	case u == nil:
		return UnitState{ActiveState: "inactive", SubState: "dead"}, nil
	case !u.active:
		return UnitState{ActiveState: "failed", SubState: "failed", Result: "exit-code", NRestarts: u.restarts}, nil
	}
	return UnitState{ActiveState: "active", SubState: "running", Result: "success", NRestarts: u.restarts}, nil
}

func (m *fakeManager) Journal(_ context.Context, unit string, n int) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail["journal "+short(unit)]; err != nil {
		return nil, err
	}
	u := m.units[unit]
	if u == nil {
		return nil, nil
	}
	lines := []string{fmt.Sprintf("%s %s says boom", short(unit), u.version)}
	return lines[max(0, len(lines)-n):], nil
}

// running lists each instance and the version it runs, sorted: "web@1 v1".
func (m *fakeManager) running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for unit, u := range m.units {
		if u.active && strings.Contains(unit, "@") {
			out = append(out, short(unit)+" "+u.version)
		}
	}
	slices.Sort(out)
	return out
}

// takeEvents returns the events so far and forgets them.
func (m *fakeManager) takeEvents() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ev := m.events
	m.events = nil
	return ev
}

// fakeRotation records drains, readies, retirements and restores as events of m.
type fakeRotation struct {
	m       *fakeManager
	mu      sync.Mutex
	drained map[string]bool
}

func (r *fakeRotation) note(op string, batch []string) error {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	names := make([]string, len(batch))
	for i, u := range batch {
		names[i] = short(u)
	}
	return r.m.record(op + " " + strings.Join(names, " "))
}

func (r *fakeRotation) Drain(_ context.Context, batch []string) error {
	r.mu.Lock()
	for _, u := range batch {
		r.drained[u] = true
	}
	r.mu.Unlock()
	return r.note("drain", batch)
}

func (r *fakeRotation) Ready(_ context.Context, batch []string) error {
	r.mu.Lock()
	for _, u := range batch {
		delete(r.drained, u)
	}
	r.mu.Unlock()
	return r.note("ready", batch)
}

func (r *fakeRotation) Retire(_ context.Context, batch []string) {
	r.mu.Lock()
	for _, u := range batch {
		delete(r.drained, u)
	}
	r.mu.Unlock()
	_ = r.note("retire", batch) // Retire cannot fail: what it records is all it does
}

func (r *fakeRotation) Restore(context.Context) {
	r.mu.Lock()
	left := slices.Sorted(func(yield func(string) bool) {
		for u := range r.drained {
			if !yield(u) {
				return
			}
		}
	})
	r.drained = map[string]bool{}
	r.mu.Unlock()
	if len(left) > 0 {
		_ = r.note("restore", left)
	}
}

// release is the files of a release of app shop with the given instances of service web,
// each file's content the version.
func release(version string, instances int) *Installed {
	spec := &units.Spec{Services: map[string]*units.Service{"web": {Name: "web", Instances: instances}}}
	in := &Installed{Target: units.TargetName("shop"), Instances: units.Instances(spec, "shop")}
	in.Files = []File{{Name: "pushdeploy-shop-web@.service", Content: version}, {Name: in.Target, Content: version}}
	return in
}

var errBoom = errors.New("boom")
