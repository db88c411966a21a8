package systemd_test

import (
	"context"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/rollout"
	"github.com/pushdeploy/pushdeploy/rollout/systemd"
	"github.com/pushdeploy/pushdeploy/units"
)

// Test service programs, run by /bin/sh from the release.
const (
	serverScript = "#!/bin/sh\nexec sleep 1000\n"
	boomScript   = "#!/bin/sh\necho boom\nexit 3\n"
	// boomOn2Script fails as instance 2 only.
	boomOn2Script = "#!/bin/sh\nif [ \"$PUSHDEPLOY_INSTANCE\" = 2 ]; then echo boom; exit 3; fi\nexec sleep 1000\n"
)

// testSettle keeps the tests short; TestEngine_Deploy_rollingRestart uses the default.
const testSettle = 300 * time.Millisecond

// openManager starts a systemd user manager for the test and opens the adapter on it, as
// the agent opens it on a host's manager, its journal synced through the test's journald,
// and installs files. The adapter is closed in t.Cleanup, before the manager stops.
func openManager(t *testing.T, files ...rollout.File) (*testenv.Systemd, *systemd.Manager) {
	t.Helper()
	sd := testenv.StartSystemd(t)
	m, err := systemd.Open(t.Context(), systemd.Config{Bus: sd.BusAddress, User: true, UnitDir: sd.UnitDir,
		JournalDir: filepath.Join(sd.JournalDir, "journal"), Sync: sd.SyncJournal})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if len(files) > 0 {
		if err := m.Install(t.Context(), files, nil); err != nil {
			t.Fatal(err)
		}
	}
	return sd, m
}

// waitState waits until unit's ActiveState is want, and fails the test after 10s.
func waitState(t *testing.T, m *systemd.Manager, unit, want string) rollout.UnitState {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := m.State(t.Context(), unit)
		if err != nil {
			t.Fatal(err)
		}
		if st.ActiveState == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: ActiveState %s after 10s, want %s", unit, st.ActiveState, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLog is a logger that writes to the test's log.
func testLog(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewConsoleWriter(zerolog.ConsoleTestWriter(t))).With().Timestamp().Logger()
}

// host is a real systemd user manager with an Engine driving it through the adapter, a
// second connection to watch it independently, and an app directory for releases outside
// /tmp (PrivateTmp= hides /tmp from the services).
type host struct {
	sd   *testenv.Systemd
	conn *sddbus.Conn
	eng  *rollout.Engine
	apps string
}

func newHost(t *testing.T, settle time.Duration) *host {
	t.Helper()
	sd, m := openManager(t)
	apps, err := os.MkdirTemp("/var/lib", "pushdeploy-test-")
	if err != nil {
		t.Fatalf("create an app directory outside /tmp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(apps) })
	if err := os.Chmod(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	return &host{sd: sd, conn: sd.Conn(t), eng: &rollout.Engine{Manager: m, Settle: settle}, apps: apps}
}

// rel is a release laid out on the host and the units generated for it.
type rel struct {
	dir       string
	spec      *units.Spec
	files     []units.File
	instances []string
	target    string
}

// installed is what deploying r installs.
func (r rel) installed() *rollout.Installed {
	return &rollout.Installed{Files: r.files, Instances: r.instances, Target: r.target}
}

// release lays out releases/<name> of app with service.json and executable scripts (path →
// content), and generates its units for a user manager.
func (h *host) release(t *testing.T, app, name, serviceJSON string, scripts map[string]string) rel {
	t.Helper()
	dir := filepath.Join(h.apps, app, "releases", name)
	scripts = maps.Clone(scripts)
	scripts["service.json"] = serviceJSON
	for p, content := range scripts {
		path := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec, err := units.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := units.Generate(spec, units.Options{App: app, ReleaseDir: dir, User: true})
	if err != nil {
		t.Fatal(err)
	}
	return rel{dir: dir, spec: spec, files: files, instances: units.Instances(spec, app), target: units.TargetName(app)}
}

// upgrade lays out two releases of app shop, each running n instances of web, and deploys
// the first.
func (h *host) upgrade(t *testing.T, n int) (v1, v2 rel, prev *rollout.Installed) {
	t.Helper()
	scripts := map[string]string{"bin/server": serverScript}
	v1 = h.release(t, "shop", "v1", webJSON(n), scripts)
	v2 = h.release(t, "shop", "v2", webJSON(n), scripts)
	return v1, v2, h.deploy(t, "shop", v1, nil)
}

// checkOn fails the test unless every instance of r is active and runs r's release, and
// the unit directory holds exactly r's files.
func (h *host) checkOn(t *testing.T, r rel) {
	t.Helper()
	h.checkState(t, "active", r.instances...)
	h.checkRunsFrom(t, r.dir, r.instances...)
	checkDisk(t, h.sd.UnitDir, r.files)
}

// plan is the Engine's plan for rolling r out as app, as the agent makes it (no haproxy).
func (h *host) plan(t *testing.T, app string, r rel) *rollout.Plan {
	t.Helper()
	p, err := h.eng.Plan(app, rollout.Release{SHA: filepath.Base(r.dir), Dir: r.dir, Spec: r.spec}, nil, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// deploy deploys r over prev with its own plan and fails the test on an error.
func (h *host) deploy(t *testing.T, app string, r rel, prev *rollout.Installed) *rollout.Installed {
	t.Helper()
	got, err := h.eng.Deploy(t.Context(), h.plan(t, app, r), r.installed(), prev)
	if err != nil {
		t.Fatalf("deploy %s: %v", r.dir, err)
	}
	return got
}

// props reads a unit's properties, with a service's Service properties merged in.
func (h *host) props(t *testing.T, unit string) map[string]any {
	t.Helper()
	p, err := h.conn.GetUnitPropertiesContext(t.Context(), unit)
	if err != nil {
		t.Fatalf("properties of %s: %v", unit, err)
	}
	if strings.HasSuffix(unit, ".service") {
		sp, err := h.conn.GetUnitTypePropertiesContext(t.Context(), unit, "Service")
		if err != nil {
			t.Fatalf("service properties of %s: %v", unit, err)
		}
		maps.Copy(p, sp)
	}
	return p
}

// checkState fails the test unless each unit's ActiveState is want.
func (h *host) checkState(t *testing.T, want string, units ...string) {
	t.Helper()
	for _, u := range units {
		if got := h.props(t, u)["ActiveState"]; got != want {
			t.Errorf("%s: ActiveState %v, want %s", u, got, want)
		}
	}
}

// checkRunsFrom fails the test unless each unit's main process runs release dir: the
// unit's WorkingDirectory, and the environment the process really has.
func (h *host) checkRunsFrom(t *testing.T, dir string, units ...string) {
	t.Helper()
	for _, u := range units {
		p := h.props(t, u)
		if got := p["WorkingDirectory"]; got != dir {
			t.Errorf("%s: WorkingDirectory %v, want %s", u, got, dir)
		}
		pid := p["MainPID"].(uint32)
		if !runsFrom(t, pid, dir) {
			t.Errorf("%s: main process %d has no PUSHDEPLOY_RELEASE_DIR=%s", u, pid, dir)
		}
	}
}

// runsFrom reports whether process pid's environment says it runs release dir.
func runsFrom(t *testing.T, pid uint32, dir string) bool {
	t.Helper()
	env, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/environ")
	if err != nil {
		t.Errorf("environment of process %d: %v", pid, err)
		return false
	}
	return slices.Contains(strings.Split(string(env), "\x00"), "PUSHDEPLOY_RELEASE_DIR="+dir)
}

// checkDisk fails the test unless the unit directory holds exactly files (the symlinks
// that enable units aside), byte for byte.
func checkDisk(t *testing.T, dir string, files []units.File) {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		got[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, f := range files {
		want[f.Name] = f.Content
	}
	for name, content := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("unit dir: %s missing", name)
		} else if g != content {
			t.Errorf("unit dir: %s differs\n--- got\n%s\n--- want\n%s", name, g, content)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unit dir: %s should not be there", name)
		}
	}
	// Drop-in directories of removed instances go with them.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".d") && !slices.ContainsFunc(files, func(f units.File) bool {
			return strings.HasPrefix(f.Name, e.Name()+"/")
		}) {
			t.Errorf("unit dir: empty drop-in directory %s left", e.Name())
		}
	}
}

// downWatch polls units' ActiveState until stopped and records the most that were not
// active at the same time.
type downWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	max    int
	at     []string // the units down when max was seen
	polls  int
	err    error
}

func watchDown(t *testing.T, conn *sddbus.Conn, units []string) *downWatch {
	ctx, cancel := context.WithCancel(t.Context())
	w := &downWatch{cancel: cancel}
	w.wg.Go(func() {
		for ctx.Err() == nil {
			var down []string
			for _, u := range units {
				p, err := conn.GetUnitPropertyContext(ctx, u, "ActiveState")
				if err != nil {
					if ctx.Err() == nil {
						w.err = err
					}
					return
				}
				if s := p.Value.Value(); s != "active" {
					down = append(down, u+" "+s.(string))
				}
			}
			w.polls++
			if len(down) > w.max {
				w.max, w.at = len(down), down
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	return w
}

// stop ends the watch, waits for it and fails the test if it could not watch.
func (w *downWatch) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	w.wg.Wait()
	if w.err != nil {
		t.Fatalf("watch instances: %v", w.err)
	}
}

// usec reads a timestamp property (microseconds since the epoch).
func usec(p map[string]any, name string) time.Time {
	return time.UnixMicro(int64(p[name].(uint64)))
}
