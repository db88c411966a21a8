package systemd_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pushdeploy/pushdeploy/rollout"
	"github.com/pushdeploy/pushdeploy/rollout/systemd"
)

// pairs batches 4 instances two by two.
func pairs(instances []string) [][]string {
	return [][]string{instances[:2], instances[2:]}
}

// batchLog records the batches something was called with.
type batchLog struct {
	mu      sync.Mutex
	batches [][]string
}

func (l *batchLog) add(batch []string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches = append(l.batches, slices.Clone(batch))
	return len(l.batches)
}

func (l *batchLog) get() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.batches)
}

// check is a CheckFunc that records each batch, checks that its instances have started
// and settled before they are checked, and returns fail's verdict (nil: healthy).
func (l *batchLog) check(h *host, t *testing.T, fail func(batch []string) error) rollout.CheckFunc {
	return func(ctx context.Context, batch []string) error {
		l.add(batch)
		h.checkState(t, "active", batch...)
		if fail != nil {
			return fail(batch)
		}
		return nil
	}
}

// rotation records the batches drained before they (re)start; it puts everything back.
type rotation struct{ drained batchLog }

func (r *rotation) Drain(_ context.Context, batch []string) error { r.drained.add(batch); return nil }
func (r *rotation) Ready(context.Context, []string) error         { return nil }
func (r *rotation) Retire(context.Context, []string)              {}
func (r *rotation) Restore(context.Context)                       {}

// pairsPlan is a plan that rolls r's 4 instances over two by two, healthy whatever they do.
func pairsPlan(t *testing.T, r rel) *rollout.Plan {
	return &rollout.Plan{App: "shop", Batches: pairs(r.instances), Log: testLog(t)}
}

// TestEngine_Deploy_batches rolls 4 instances over in batches of 2: both restart together,
// the check is asked about each batch once it has started, and no more than 2 are ever
// down.
func TestEngine_Deploy_batches(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	_, v2, prev := h.upgrade(t, 4)

	var healthy batchLog
	p := pairsPlan(t, v2)
	p.Check = healthy.check(h, t, nil)
	w := watchDown(t, h.sd.Conn(t), v2.instances)
	if _, err := h.eng.Deploy(t.Context(), p, v2.installed(), prev); err != nil {
		t.Fatal(err)
	}
	w.stop(t)
	if w.max > 2 {
		t.Errorf("%d instances down at once, want at most 2: %v", w.max, w.at)
	}
	if got, want := healthy.get(), pairs(v2.instances); !reflect.DeepEqual(got, want) {
		t.Errorf("health check: got %v, want %v", got, want)
	}
	h.checkOn(t, v2)
}

// TestEngine_Deploy_unhealthyBatch fails the health check of the second batch: both
// batches go back to the previous units, the failed one first, each drained and checked
// again, after what the units read besides was put back.
func TestEngine_Deploy_unhealthyBatch(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	v1, v2, prev := h.upgrade(t, 4)

	sick := errors.New("GET /health: status 503")
	var healthy, reverted batchLog
	rot := &rotation{}
	p := pairsPlan(t, v2)
	p.Check = healthy.check(h, t, func(batch []string) error {
		if batch[0] == v2.instances[2] {
			return sick
		}
		return nil
	})
	p.RevertCheck = reverted.check(h, t, nil)
	p.Rotation = rot
	// PutBack runs once, after the failed batch and before the first reverted one.
	putBackAt := -1
	p.PutBack = func(context.Context) error {
		if putBackAt >= 0 {
			t.Error("PutBack called twice")
		}
		putBackAt = len(rot.drained.get())
		return nil
	}
	got, err := h.eng.Deploy(t.Context(), p, v2.installed(), prev)
	t.Logf("deploy error: %v", err)
	if putBackAt != 2 {
		t.Errorf("PutBack called after %d batches, want 2 (the rollout's, before the revert's)", putBackAt)
	}
	if !errors.Is(err, sick) || !strings.Contains(err.Error(), "batch 2 of 2: health check: GET /health: status 503") {
		t.Fatalf("error: got %v, want the second batch's health check", err)
	}
	if !strings.Contains(err.Error(), "previous units put back and healthy") {
		t.Errorf("error does not say the previous units are back: %v", err)
	}
	if got != prev {
		t.Errorf("installed: got %+v, want the previous %+v", got, prev)
	}
	if got, want := reverted.get(), [][]string{v2.instances[2:], v2.instances[:2]}; !reflect.DeepEqual(got, want) {
		t.Errorf("revert health check: got %v, want %v (the failed batch first)", got, want)
	}
	if got, want := rot.drained.get(), [][]string{v2.instances[:2], v2.instances[2:], v2.instances[2:], v2.instances[:2]}; !reflect.DeepEqual(got, want) {
		t.Errorf("drained: got %v, want %v (each batch of the rollout, then of the revert)", got, want)
	}
	h.checkOn(t, v1)

	// A reverted batch that is not healthy either is reported with the failure.
	p.Rotation, p.PutBack = nil, nil
	p.RevertCheck = rollout.CannotCheck(errors.New("still sick"))
	_, err = h.eng.Deploy(t.Context(), p, v2.installed(), prev)
	if err == nil || !strings.Contains(err.Error(), "previous units of shop put back, but not healthy") || !strings.Contains(err.Error(), "still sick") {
		t.Errorf("error: got %v, want the revert's health failure", err)
	}
}

// TestEngine_Deploy_noAutoRevert fails the first batch with auto_revert off: the rollout
// halts, the failed batch keeps the new units and the rest keep running the old release.
func TestEngine_Deploy_noAutoRevert(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	v1, v2, prev := h.upgrade(t, 4)

	p := pairsPlan(t, v2)
	p.Check = rollout.CannotCheck(errors.New("sick"))
	p.NoRevert = map[string]bool{}
	for _, u := range v2.instances {
		p.NoRevert[u] = true
	}
	got, err := h.eng.Deploy(t.Context(), p, v2.installed(), prev)
	if err == nil || !strings.Contains(err.Error(), "auto_revert is off: rollout halted, not reverted") {
		t.Fatalf("error: got %v, want the halted rollout", err)
	}
	if want := v2.installed(); !reflect.DeepEqual(got, want) {
		t.Errorf("installed: got %+v, want %+v", got, want)
	}
	h.checkRunsFrom(t, v2.dir, v2.instances[:2]...)
	// The untouched instances still run their old processes (their unit files are new).
	for _, u := range v2.instances[2:] {
		if pid := h.props(t, u)["MainPID"].(uint32); !runsFrom(t, pid, v1.dir) {
			t.Errorf("%s: main process %d does not run %s", u, pid, v1.dir)
		}
	}
	checkDisk(t, h.sd.UnitDir, v2.files)
}

// TestEngine_Restart restarts 4 installed instances two by two with no file written: every
// instance gets a new process on the same units; a batch found unhealthy halts it.
func TestEngine_Restart(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	v1 := h.release(t, "shop", "v1", webJSON(4), map[string]string{"bin/server": serverScript})
	h.deploy(t, "shop", v1, nil)
	pids := func() []uint32 {
		var out []uint32
		for _, u := range v1.instances {
			out = append(out, h.props(t, u)["MainPID"].(uint32))
		}
		return out
	}
	old := pids()
	var healthy batchLog
	p := pairsPlan(t, v1)
	p.Check = healthy.check(h, t, nil)
	if err := h.eng.Restart(t.Context(), p); err != nil {
		t.Fatalf("restart: %v", err)
	}
	for i, pid := range pids() {
		if pid == 0 || pid == old[i] {
			t.Errorf("%s: MainPID %d before the restart, %d after, want a new process", v1.instances[i], old[i], pid)
		}
	}
	if got, want := healthy.get(), pairs(v1.instances); !reflect.DeepEqual(got, want) {
		t.Errorf("health check: got %v batches %v, want 2: %v", len(got), got, want)
	}
	h.checkOn(t, v1)

	old = pids()
	var sick batchLog
	p.Check = sick.check(h, t, func([]string) error { return errors.New("sick") })
	err := h.eng.Restart(t.Context(), p)
	if n := len(sick.get()); err == nil || !strings.Contains(err.Error(), "batch 1 of 2: health check: sick; restart halted") || n != 1 {
		t.Fatalf("error: got %d batches restarted, %v; want 1 and the first batch's health check and the halt", n, err)
	}
	if now := pids(); now[2] != old[2] || now[3] != old[3] {
		t.Errorf("second batch restarted after the first failed: MainPIDs %v, then %v", old, now)
	}
}

// TestEngine_Deploy_badBatches refuses a plan that leaves an instance out, holds one twice,
// has an empty batch or names what is not an instance, before anything is written or asked
// of systemd.
func TestEngine_Deploy_badBatches(t *testing.T) {
	dir := t.TempDir()
	eng := &rollout.Engine{Manager: systemd.Unconnected(dir)}
	instances := []string{"pushdeploy-shop-web@1.service", "pushdeploy-shop-web@2.service"}
	next := &rollout.Installed{Files: []rollout.File{{Name: "pushdeploy-shop.target"}}, Instances: instances, Target: "pushdeploy-shop.target"}
	for _, b := range [][][]string{{instances[:1]}, {instances, instances[1:]}, {{}, instances}, {{"pushdeploy-shop-web@3.service"}, instances}} {
		p := &rollout.Plan{App: "shop", Batches: b, Log: testLog(t)}
		if _, err := eng.Deploy(t.Context(), p, next, nil); err == nil || !strings.Contains(err.Error(), "rollout batches") {
			t.Errorf("batches %v: got %v, want a rollout batches error", b, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Errorf("unit dir: %s written", ents[0].Name())
	}
}
