package units

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

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// Test service programs, run by /bin/sh from the release.
const (
	serverScript = "#!/bin/sh\nexec sleep 1000\n"
	boomScript   = "#!/bin/sh\necho boom\nexit 3\n"
	// boomOn2Script fails as instance 2 only.
	boomOn2Script = "#!/bin/sh\nif [ \"$PUSHDEPLOY_INSTANCE\" = 2 ]; then echo boom; exit 3; fi\nexec sleep 1000\n"
)

// host is a real systemd user manager with an Installer for it, and an app directory for
// releases outside /tmp (PrivateTmp= hides /tmp from the services).
type host struct {
	sd   *testenv.Systemd
	conn *sddbus.Conn
	in   *Installer
	apps string
}

func newHost(t *testing.T, settle time.Duration) *host {
	t.Helper()
	sd := testenv.StartSystemd(t)
	apps, err := os.MkdirTemp("/var/lib", "pushdeploy-test-")
	if err != nil {
		t.Fatalf("create an app directory outside /tmp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(apps) })
	if err := os.Chmod(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	h := &host{sd: sd, conn: sd.Conn(t), apps: apps}
	h.in = &Installer{
		Dir:     sd.UnitDir,
		Conn:    h.conn,
		Journal: func(_ context.Context, unit string, n int) []string { return sd.JournalLines(t, unit, n) },
		Settle:  settle,
		Log:     func(msg string, kv ...any) { t.Logf("installer: %s %v", msg, kv) },
	}
	return h
}

// rel is a release laid out on the host and the units generated for it.
type rel struct {
	dir       string
	files     []File
	instances []string
	target    string
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
	spec, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(spec, Options{App: app, ReleaseDir: dir, User: true})
	if err != nil {
		t.Fatal(err)
	}
	return rel{dir: dir, files: files, instances: Instances(spec, app), target: TargetName(app)}
}

// deploy deploys r over prev and fails the test on an error.
func (h *host) deploy(t *testing.T, app string, r rel, prev *Installed) *Installed {
	t.Helper()
	got, err := h.in.Deploy(t.Context(), app, r.files, r.instances, r.target, prev)
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
		env, err := os.ReadFile("/proc/" + strconv.Itoa(int(p["MainPID"].(uint32))) + "/environ")
		if err != nil {
			t.Errorf("%s: environment of main process %v: %v", u, p["MainPID"], err)
			continue
		}
		if want := "PUSHDEPLOY_RELEASE_DIR=" + dir; !slices.Contains(strings.Split(string(env), "\x00"), want) {
			t.Errorf("%s: main process %v has no %s", u, p["MainPID"], want)
		}
	}
}

// checkDisk fails the test unless the unit directory holds exactly files (the symlinks
// that enable units aside), byte for byte.
func checkDisk(t *testing.T, dir string, files []File) {
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
		if strings.HasSuffix(e.Name(), ".d") && !slices.ContainsFunc(files, func(f File) bool {
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

// stop ends the watch and waits for it.
func (w *downWatch) stop() {
	w.cancel()
	w.wg.Wait()
}

// usec reads a timestamp property (microseconds since the epoch).
func usec(p map[string]any, name string) time.Time {
	return time.UnixMicro(int64(p[name].(uint64)))
}
