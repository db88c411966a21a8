package units

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestBatches(t *testing.T) {
	tests := []struct {
		name    string
		rollout string // service.json rollout of web
		n       int
		want    string
	}{
		{"default one at a time", `{}`, 3, "[1] [2] [3]"},
		{"count", `{"max_parallel": 2}`, 5, "[1 2] [3 4] [5]"},
		{"percentage rounds up", `{"max_parallel": "50%"}`, 3, "[1 2] [3]"},
		{"canary first", `{"max_parallel": 2, "canary": 1}`, 4, "[1] [2 3] [4]"},
		{"canary above max_parallel", `{"max_parallel": 2, "canary": 3}`, 6, "[1 2] [3] [4 5] [6]"},
		{"canary of every instance", `{"canary": 2}`, 2, "[1] [2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := Parse([]byte(fmt.Sprintf(`{"services": {"web": {"command": "bin/server", "instances": %d, "rollout": %s},
				"api": {"command": "bin/server", "instances": 2}}}`, tt.n, tt.rollout)))
			if err != nil {
				t.Fatal(err)
			}
			got := Batches(spec, "shop")
			// Services go in order: api (one at a time, the default) before web.
			want := "[api1] [api2] " + tt.want
			if s := batchString(got); s != want {
				t.Errorf("got %s, want %s", s, want)
			}
		})
	}
}

// batchString shows batches compactly: [api1] for pushdeploy-shop-api@1.service, [1 2] for
// instances of web.
func batchString(batches [][]string) string {
	var out []string
	for _, b := range batches {
		var names []string
		for _, u := range b {
			u = strings.TrimSuffix(strings.TrimPrefix(u, "pushdeploy-shop-"), ".service")
			u = strings.Replace(strings.TrimPrefix(u, "web@"), "@", "", 1)
			names = append(names, u)
		}
		out = append(out, "["+strings.Join(names, " ")+"]")
	}
	return strings.Join(out, " ")
}

// pairs batches 4 instances two by two.
func pairs(instances []string) [][]string {
	return [][]string{instances[:2], instances[2:]}
}

// hookLog records the batches a health hook was called with.
type hookLog struct {
	mu      sync.Mutex
	batches [][]string
}

func (l *hookLog) hook(h *host, t *testing.T, fail func(batch []string) error) func(context.Context, []string) error {
	return func(ctx context.Context, batch []string) error {
		l.mu.Lock()
		l.batches = append(l.batches, batch)
		l.mu.Unlock()
		h.checkState(t, "active", batch...) // started and settled before the hook
		if fail != nil {
			return fail(batch)
		}
		return nil
	}
}

// TestInstaller_Deploy_batches rolls 4 instances over in batches of 2: both restart
// together, the hook is asked about each batch once it has started, and no more than 2 are
// ever down.
func TestInstaller_Deploy_batches(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	scripts := map[string]string{"bin/server": serverScript}
	v1 := h.release(t, "shop", "v1", webJSON(4), scripts)
	v2 := h.release(t, "shop", "v2", webJSON(4), scripts)
	prev := h.deploy(t, "shop", v1, nil)

	var healthy hookLog
	h.in.Batches = pairs
	h.in.Healthy = healthy.hook(h, t, nil)
	w := watchDown(t, h.sd.Conn(t), v2.instances)
	h.deploy(t, "shop", v2, prev)
	w.stop()
	if w.err != nil {
		t.Fatalf("watch instances: %v", w.err)
	}
	if w.max > 2 {
		t.Errorf("%d instances down at once, want at most 2: %v", w.max, w.at)
	}
	if want := pairs(v2.instances); !reflect.DeepEqual(healthy.batches, want) {
		t.Errorf("health hook: got %v, want %v", healthy.batches, want)
	}
	h.checkState(t, "active", v2.instances...)
	h.checkRunsFrom(t, v2.dir, v2.instances...)
	checkDisk(t, h.sd.UnitDir, v2.files)
}

// TestInstaller_Deploy_unhealthyBatch fails the health check of the second batch: both
// batches go back to the previous units, the failed one first, each checked again.
func TestInstaller_Deploy_unhealthyBatch(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	scripts := map[string]string{"bin/server": serverScript}
	v1 := h.release(t, "shop", "v1", webJSON(4), scripts)
	v2 := h.release(t, "shop", "v2", webJSON(4), scripts)
	prev := h.deploy(t, "shop", v1, nil)

	sick := errors.New("GET /health: status 503")
	var healthy, reverted hookLog
	h.in.Batches = pairs
	h.in.Healthy = healthy.hook(h, t, func(batch []string) error {
		if batch[0] == v2.instances[2] {
			return sick
		}
		return nil
	})
	h.in.RevertHealthy = reverted.hook(h, t, nil)
	var before hookLog
	h.in.BeforeBatch = func(_ context.Context, batch []string) error {
		before.mu.Lock()
		defer before.mu.Unlock()
		before.batches = append(before.batches, batch)
		return nil
	}
	// BeforeRevert runs once, after the failed batch and before the first reverted one.
	beforeRevertAt := -1
	h.in.BeforeRevert = func(context.Context) error {
		before.mu.Lock()
		defer before.mu.Unlock()
		if beforeRevertAt >= 0 {
			t.Error("BeforeRevert called twice")
		}
		beforeRevertAt = len(before.batches)
		return nil
	}
	got, err := h.in.Deploy(t.Context(), "shop", v2.files, v2.instances, v2.target, prev)
	h.in.BeforeBatch, h.in.BeforeRevert = nil, nil
	t.Logf("deploy error: %v", err)
	if beforeRevertAt != 2 {
		t.Errorf("BeforeRevert called after %d batches, want 2 (the rollout's, before the revert's)", beforeRevertAt)
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
	if want := [][]string{v2.instances[2:], v2.instances[:2]}; !reflect.DeepEqual(reverted.batches, want) {
		t.Errorf("revert health hook: got %v, want %v (the failed batch first)", reverted.batches, want)
	}
	if want := [][]string{v2.instances[:2], v2.instances[2:], v2.instances[2:], v2.instances[:2]}; !reflect.DeepEqual(before.batches, want) {
		t.Errorf("before batch hook: got %v, want %v (each batch of the rollout, then of the revert)", before.batches, want)
	}
	h.checkState(t, "active", v1.instances...)
	h.checkRunsFrom(t, v1.dir, v1.instances...)
	checkDisk(t, h.sd.UnitDir, v1.files)

	// A reverted batch that is not healthy either is reported with the failure.
	h.in.RevertHealthy = func(context.Context, []string) error { return errors.New("still sick") }
	_, err = h.in.Deploy(t.Context(), "shop", v2.files, v2.instances, v2.target, prev)
	if err == nil || !strings.Contains(err.Error(), "previous units of shop put back, but not healthy") || !strings.Contains(err.Error(), "still sick") {
		t.Errorf("error: got %v, want the revert's health failure", err)
	}
}

// TestInstaller_Deploy_noAutoRevert fails the first batch with auto_revert off: the rollout
// halts, the failed batch keeps the new units and the rest keep running the old release.
func TestInstaller_Deploy_noAutoRevert(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	scripts := map[string]string{"bin/server": serverScript}
	v1 := h.release(t, "shop", "v1", webJSON(4), scripts)
	v2 := h.release(t, "shop", "v2", webJSON(4), scripts)
	prev := h.deploy(t, "shop", v1, nil)

	h.in.Batches = pairs
	h.in.Healthy = func(context.Context, []string) error { return errors.New("sick") }
	h.in.AutoRevert = func([]string) bool { return false }
	got, err := h.in.Deploy(t.Context(), "shop", v2.files, v2.instances, v2.target, prev)
	if err == nil || !strings.Contains(err.Error(), "auto_revert is off: rollout halted, not reverted") {
		t.Fatalf("error: got %v, want the halted rollout", err)
	}
	want := &Installed{Files: v2.files, Instances: v2.instances, Target: v2.target}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("installed: got %+v, want %+v", got, want)
	}
	h.checkRunsFrom(t, v2.dir, v2.instances[:2]...)
	// The untouched instances still run their old processes (their unit files are new).
	for _, u := range v2.instances[2:] {
		pid := h.props(t, u)["MainPID"].(uint32)
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !strings.Contains(string(env), "PUSHDEPLOY_RELEASE_DIR="+v1.dir+"\x00") {
			t.Errorf("%s: main process %d does not run %s (%v)", u, pid, v1.dir, err)
		}
	}
	checkDisk(t, h.sd.UnitDir, v2.files)
}

// TestInstaller_Restart restarts 4 installed instances two by two with no file written:
// every instance gets a new process on the same units; a batch found unhealthy halts it.
func TestInstaller_Restart(t *testing.T) {
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
	var healthy hookLog
	h.in.Healthy = healthy.hook(h, t, nil)
	if n, err := h.in.Restart(t.Context(), "shop", pairs(v1.instances)); err != nil || n != 2 {
		t.Fatalf("restart: got %d batches, %v; want 2, nil", n, err)
	}
	for i, pid := range pids() {
		if pid == 0 || pid == old[i] {
			t.Errorf("%s: MainPID %d before the restart, %d after, want a new process", v1.instances[i], old[i], pid)
		}
	}
	if want := pairs(v1.instances); !reflect.DeepEqual(healthy.batches, want) {
		t.Errorf("health hook: got %v, want %v", healthy.batches, want)
	}
	h.checkRunsFrom(t, v1.dir, v1.instances...)
	checkDisk(t, h.sd.UnitDir, v1.files)

	old = pids()
	h.in.Healthy = func(context.Context, []string) error { return errors.New("sick") }
	n, err := h.in.Restart(t.Context(), "shop", pairs(v1.instances))
	if err == nil || !strings.Contains(err.Error(), "batch 1 of 2: health check: sick; restart halted") || n != 1 {
		t.Fatalf("error: got %d batches restarted, %v; want 1 and the first batch's health check and the halt", n, err)
	}
	if now := pids(); now[2] != old[2] || now[3] != old[3] {
		t.Errorf("second batch restarted after the first failed: MainPIDs %v, then %v", old, now)
	}
}

func TestInstaller_Deploy_badBatches(t *testing.T) {
	in := &Installer{Dir: t.TempDir()}
	files := []File{{Name: "pushdeploy-shop.target"}}
	instances := []string{"pushdeploy-shop-web@1.service", "pushdeploy-shop-web@2.service"}
	for _, b := range [][][]string{{instances[:1]}, {instances, instances[1:]}, {{}, instances}, {{"pushdeploy-shop-web@3.service"}, instances}} {
		in.Batches = func([]string) [][]string { return b }
		if _, err := in.Deploy(t.Context(), "shop", files, instances, files[0].Name, nil); err == nil || !strings.Contains(err.Error(), "rollout batches") {
			t.Errorf("batches %v: got %v, want a rollout batches error", b, err)
		}
	}
}
