package systemd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/rollout"
	"github.com/pushdeploy/pushdeploy/rollout/systemd"
	"github.com/pushdeploy/pushdeploy/units"
)

func webJSON(instances int) string {
	return fmt.Sprintf(`{"services": {"web": {"command": "bin/server", "instances": %d, "port": 18000}}}`, instances)
}

func TestEngine_Deploy_first(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			t.Parallel()
			h := newHost(t, testSettle)
			r := h.release(t, "shop", "v1", webJSON(n), map[string]string{"bin/server": serverScript})
			got := h.deploy(t, "shop", r, nil)

			if want := r.installed(); !reflect.DeepEqual(got, want) {
				t.Errorf("installed: got %+v, want %+v", got, want)
			}
			if len(r.instances) != n {
				t.Fatalf("instances: got %v, want %d", r.instances, n)
			}
			h.checkState(t, "active", r.instances...)
			h.checkRunsFrom(t, r.dir, r.instances...)
			target := h.props(t, r.target)
			if target["ActiveState"] != "active" || target["UnitFileState"] != "enabled" {
				t.Errorf("%s: ActiveState %v, UnitFileState %v, want active and enabled",
					r.target, target["ActiveState"], target["UnitFileState"])
			}
			checkDisk(t, h.sd.UnitDir, r.files)
		})
	}
}

// TestEngine_Deploy_rollingRestart deploys a second release over a first one of 4
// instances and watches the restart: one instance after another, never two down at once.
// It also reports what a deploy costs next to the service's own start time.
func TestEngine_Deploy_rollingRestart(t *testing.T) {
	t.Parallel()
	h := newHost(t, 0) // DefaultSettle
	scripts := map[string]string{"bin/server": serverScript}
	v1 := h.release(t, "shop", "v1", webJSON(4), scripts)
	v2 := h.release(t, "shop", "v2", webJSON(4), scripts)

	begin := time.Now()
	prev := h.deploy(t, "shop", v1, nil)
	first := time.Since(begin)
	before := map[string]map[string]any{}
	for _, u := range v1.instances {
		before[u] = h.props(t, u)
	}

	w := watchDown(t, h.sd.Conn(t), v2.instances)
	begin = time.Now()
	h.deploy(t, "shop", v2, prev)
	second := time.Since(begin)
	w.stop(t)
	if w.max > 1 {
		t.Errorf("%d instances down at once during the deploy: %v", w.max, w.at)
	}
	t.Logf("%d polls of all 4 instances during the deploy; at most %d down at once", w.polls, w.max)

	var startOwn, restartOwn time.Duration
	var last time.Time
	for i, u := range v2.instances {
		b, a := before[u], h.props(t, u)
		if a["MainPID"] == b["MainPID"] {
			t.Errorf("%s: MainPID %v unchanged: not restarted", u, a["MainPID"])
		}
		enter := usec(a, "ActiveEnterTimestamp")
		if !enter.After(usec(b, "ActiveEnterTimestamp")) {
			t.Errorf("%s: ActiveEnterTimestamp %v not after %v", u, enter, usec(b, "ActiveEnterTimestamp"))
		}
		// One after another: each instance started once the one before had settled.
		if i > 0 && enter.Sub(last) < rollout.DefaultSettle {
			t.Errorf("%s: active %v after %s, want at least Settle %v", u, enter.Sub(last), v2.instances[i-1], rollout.DefaultSettle)
		}
		last = enter
		startOwn += usec(b, "ActiveEnterTimestamp").Sub(usec(b, "InactiveExitTimestamp"))
		restartOwn += enter.Sub(usec(a, "ActiveExitTimestamp"))
	}
	h.checkOn(t, v2)

	settle := 4 * rollout.DefaultSettle
	t.Logf("first deploy, 4 instances, Settle %v: %v = settle %v + service start %v (fork, sandbox, exec, summed over instances) + %v pushdeploy and systemd overhead (write, reload, jobs, polls, enable)",
		rollout.DefaultSettle, first.Round(time.Millisecond), settle, startOwn.Round(time.Microsecond), (first - settle - startOwn).Round(time.Millisecond))
	t.Logf("second deploy, 4 restarts, Settle %v: %v = settle %v + service stop and start %v + %v overhead",
		rollout.DefaultSettle, second.Round(time.Millisecond), settle, restartOwn.Round(time.Microsecond), (second - settle - restartOwn).Round(time.Millisecond))
}

// TestEngine_Deploy_failure deploys a release whose command exits at once: the deploy
// fails with the instance's last journal lines, as the adapter's own Journal reads them,
// and the host is back on the previous units.
func TestEngine_Deploy_failure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		old       string // service.json of the running release; "" for a first deploy
		new       string
		script    string
		want      string   // in the error: the instance's last journal lines
		failed    string   // the instance named in the error
		oldActive []string // instances active on the old release afterwards, untouched ones first
		untouched int      // how many of oldActive the deploy never restarted
		inactive  []string
	}{
		{
			name: "exits at once", old: webJSON(2), new: webJSON(2), script: boomScript, want: "boom",
			failed:    "pushdeploy-shop-web@1.service",
			oldActive: []string{"pushdeploy-shop-web@2.service", "pushdeploy-shop-web@1.service"}, untouched: 1,
		},
		{
			// Type=exec: the start job itself fails.
			name: "cannot be executed", old: webJSON(2), new: webJSON(2), script: "#!/no/such/shell\n", want: "203/EXEC",
			failed:    "pushdeploy-shop-web@1.service",
			oldActive: []string{"pushdeploy-shop-web@2.service", "pushdeploy-shop-web@1.service"}, untouched: 1,
		},
		{
			name: "an instance the old release did not have", old: webJSON(1), new: webJSON(3), script: boomOn2Script, want: "boom",
			failed:    "pushdeploy-shop-web@2.service",
			oldActive: []string{"pushdeploy-shop-web@1.service"},
			inactive:  []string{"pushdeploy-shop-web@2.service", "pushdeploy-shop-web@3.service"},
		},
		{
			name: "first deploy", new: webJSON(3), script: boomOn2Script, want: "boom",
			failed:   "pushdeploy-shop-web@2.service",
			inactive: []string{"pushdeploy-shop-web@1.service", "pushdeploy-shop-web@2.service", "pushdeploy-shop-web@3.service"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHost(t, testSettle)
			var prev *rollout.Installed
			var old rel
			before := map[string]any{}
			if tt.old != "" {
				old = h.release(t, "shop", "v1", tt.old, map[string]string{"bin/server": serverScript})
				prev = h.deploy(t, "shop", old, nil)
				for _, u := range tt.oldActive {
					before[u] = h.props(t, u)["MainPID"]
				}
			}
			r := h.release(t, "shop", "v2", tt.new, map[string]string{"bin/server": tt.script})
			got, err := h.eng.Deploy(t.Context(), h.plan(t, "shop", r), r.installed(), prev)
			if err == nil {
				t.Fatal("deploy succeeded, want an error")
			}
			t.Logf("deploy error: %v", err)
			ie, ok := errors.AsType[*rollout.InstanceError](err)
			if !ok || ie.Unit != tt.failed {
				t.Fatalf("error: got %v, want an InstanceError for %s", err, tt.failed)
			}
			// The quote is the adapter's journal, whole: the instance's own output and the
			// manager's lines about it, nothing else, and no error reading it.
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(strings.Join(ie.Journal, "\n"), tt.want) {
				t.Errorf("error does not carry the instance's journal line %q: %v", tt.want, err)
			}
			if strings.Contains(err.Error(), "read journal") {
				t.Errorf("error says the journal could not be read: %v", err)
			}
			if got != prev {
				t.Errorf("installed: got %+v, want the previous %+v", got, prev)
			}

			h.checkState(t, "active", tt.oldActive...)
			h.checkRunsFrom(t, old.dir, tt.oldActive...)
			for i, u := range tt.oldActive {
				if pid := h.props(t, u)["MainPID"]; (pid == before[u]) != (i < tt.untouched) {
					t.Errorf("%s: MainPID %v, was %v: want restarted on the old units only if the deploy had touched it", u, pid, before[u])
				}
			}
			for _, u := range tt.inactive {
				if s := h.props(t, u)["ActiveState"]; s != "inactive" {
					t.Errorf("%s: ActiveState %v, want inactive (stopped, failed state reset)", u, s)
				}
			}
			if prev == nil {
				checkDisk(t, h.sd.UnitDir, nil)
				return
			}
			checkDisk(t, h.sd.UnitDir, prev.Files)
			h.checkState(t, "active", prev.Target)
		})
	}
}

// TestEngine_Deploy_cancelled cancels a deploy once its first instance runs the new
// release, as a shutdown would: the host goes back to the previous release.
func TestEngine_Deploy_cancelled(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	v1, v2, prev := h.upgrade(t, 2)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	p := h.plan(t, "shop", v2)
	p.Log = p.Log.Hook(zerolog.HookFunc(func(_ *zerolog.Event, _ zerolog.Level, msg string) {
		if msg == "instance started" {
			cancel()
		}
	}))
	got, err := h.eng.Deploy(ctx, p, v2.installed(), prev)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error: got %v, want context.Canceled", err)
	}
	if got != prev {
		t.Errorf("installed: got %+v, want the previous %+v", got, prev)
	}
	h.checkOn(t, v1)
}

// TestEngine_Deploy_dropsUnits deploys a release that drops a service and reduces another
// from 3 instances to 1.
func TestEngine_Deploy_dropsUnits(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	scripts := map[string]string{"bin/server": serverScript}
	v1 := h.release(t, "shop", "v1", `{"services": {
		"web": {"command": "bin/server", "instances": 3, "port": 18000},
		"worker": {"command": "bin/server"}}}`, scripts)
	v2 := h.release(t, "shop", "v2", webJSON(1), scripts)
	prev := h.deploy(t, "shop", v1, nil)
	h.checkState(t, "active", v1.instances...)
	h.deploy(t, "shop", v2, prev)

	gone := []string{"pushdeploy-shop-web@2.service", "pushdeploy-shop-web@3.service", "pushdeploy-shop-worker@1.service"}
	h.checkState(t, "inactive", gone...)
	h.checkState(t, "active", "pushdeploy-shop-web@1.service", v2.target)
	h.checkRunsFrom(t, v2.dir, "pushdeploy-shop-web@1.service")
	checkDisk(t, h.sd.UnitDir, v2.files)
	// The template of web stays, its dropped instances' drop-ins go; worker goes entirely.
	for _, u := range gone[:2] {
		if d := h.props(t, u)["DropInPaths"]; len(d.([]string)) > 0 {
			t.Errorf("%s: DropInPaths %v, want none", u, d)
		}
	}
	if s := h.props(t, gone[2])["LoadState"]; s != "not-found" {
		t.Errorf("%s: LoadState %v, want not-found", gone[2], s)
	}
}

func TestEngine_Remove(t *testing.T) {
	t.Parallel()
	h := newHost(t, testSettle)
	r := h.release(t, "shop", "v1", webJSON(2), map[string]string{"bin/server": serverScript})
	prev := h.deploy(t, "shop", r, nil)
	if err := h.eng.Remove(t.Context(), h.plan(t, "shop", r), prev); err != nil {
		t.Fatal(err)
	}
	h.checkState(t, "inactive", append(r.instances, r.target)...)
	if s := h.props(t, r.target)["UnitFileState"]; s != "" {
		t.Errorf("%s: UnitFileState %v, want none (no file)", r.target, s)
	}
	checkDisk(t, h.sd.UnitDir, nil)
	if ents, _ := os.ReadDir(filepath.Join(h.sd.UnitDir, "default.target.wants")); len(ents) > 0 {
		t.Errorf("default.target.wants still holds %s", ents[0].Name())
	}
	if err := h.eng.Remove(t.Context(), h.plan(t, "shop", r), nil); err != nil {
		t.Errorf("remove nothing: %v", err)
	}
}

// TestEngine_Deploy_refusesForeignNames checks names before anything is written or asked
// of systemd (the adapter has no connection).
func TestEngine_Deploy_refusesForeignNames(t *testing.T) {
	dir := t.TempDir()
	eng := &rollout.Engine{Manager: systemd.Unconnected(dir)}
	target := []units.File{{Name: "pushdeploy-shop.target"}}
	tests := []struct {
		name      string
		files     []units.File
		instances []string
		target    string
		want      string
	}{
		{"escapes the unit directory", append(target, units.File{Name: "../evil.service"}), nil, "pushdeploy-shop.target", `"../evil.service" is not a clean name inside the unit directory`},
		{"not ours", append(target, units.File{Name: "sshd.service"}), nil, "pushdeploy-shop.target", `"sshd.service" is not`},
		{"deep drop-in", append(target, units.File{Name: "pushdeploy-shop-web@.service.d/a/b.conf"}), nil, "pushdeploy-shop.target", "neither a unit nor a drop-in"},
		{"foreign instance", target, []string{"dbus.service"}, "pushdeploy-shop.target", `instance "dbus.service"`},
		{"target without file", nil, nil, "pushdeploy-shop.target", "has no file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &rollout.Plan{App: "shop", Log: testLog(t)}
			next := &rollout.Installed{Files: tt.files, Instances: tt.instances, Target: tt.target}
			_, err := eng.Deploy(t.Context(), p, next, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error: got %v, want one containing %q", err, tt.want)
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Errorf("unit dir: %s written", ents[0].Name())
	}
}
