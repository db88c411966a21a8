package agent

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// onSystemd points c at the test's systemd user manager, with a data dir its services can
// see, and the instances' settle time.
func onSystemd(t testing.TB, c *config.Config, sd *testenv.Systemd, settle time.Duration) {
	c.DataDir = testenv.DataDirOutsideTmp(t)
	c.Systemd = config.Systemd{Scope: "user", UnitDir: sd.UnitDir, Bus: sd.BusAddress,
		JournalDir: filepath.Join(sd.JournalDir, "journal"), Settle: settle}
}

func get(url string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

func TestAgent_services(t *testing.T) {
	sd := testenv.StartSystemd(t)
	hello := testenv.HelloBinary(t)
	port := testenv.FreePorts(t, 4)
	f := newFixture(t, func(c *config.Config) {
		onSystemd(t, c, sd, 500*time.Millisecond)
	})
	deploy := func(version, command string) *state.Deploy {
		t.Helper()
		f.repo.Write("VERSION", version+"\n", 0o644)
		f.repo.Write("bin/hello", hello, 0o755)
		f.repo.Write("bin/crash", "#!/bin/sh\necho boom: version "+version+" cannot start >&2\nsleep 0.3\nexit 3\n", 0o755)
		f.repo.Write("service.json", fmt.Sprintf(`{"services": {"web": {"command": %s, "instances": 4, "port": %d}}}`, command, port), 0o644)
		sha := f.repo.Commit("version " + version)
		return f.pushAndDeploy(sha)
	}
	answers := func(want string) {
		t.Helper()
		for i := 0; i < 4; i++ {
			if got := get(fmt.Sprintf("http://127.0.0.1:%d/", port+i)); got != want {
				t.Errorf("instance %d: got %q, want %q", i+1, got, want)
			}
		}
	}

	for _, v := range []string{"1", "2"} {
		d := deploy(v, `["bin/hello"]`)
		if d.Status != state.StatusSucceeded {
			t.Fatalf("version %s: got %s (%s), want succeeded", v, d.Status, d.Error)
		}
		answers("hello from version " + v)
		logTimings(t, f, d)
	}
	unit := sd.Systemctl(t, "cat", "pushdeploy-web-web@1.service")
	if cur := f.current(); !strings.Contains(unit, "releases/"+cur) || strings.Contains(unit, "/current") {
		t.Errorf("unit does not name its release %.12s explicitly:\n%s", cur, unit)
	}

	good := f.current()
	d := deploy("3", `["bin/crash"]`)
	if d.Status != state.StatusFailed || !strings.Contains(d.Error, "boom: version 3 cannot start") {
		t.Fatalf("crashing release: got %s (%q), want failed with the unit's output", d.Status, d.Error)
	}
	if got := f.current(); got != good {
		t.Errorf("current: got %.12s, want %.12s kept", got, good)
	}
	answers("hello from version 2")
	checkStatusPage(t, f, good)

	// A release without service.json runs nothing: the previous services must stop.
	f.repo.Remove("service.json")
	sha := f.repo.Commit("no services")
	f.push("deploy-production")
	if d := f.wait(f.deliver("refs/heads/deploy-production", good, sha).Deploy); d.Status != state.StatusSucceeded {
		t.Fatalf("release without service.json: got %s (%s)", d.Status, d.Error)
	}
	if got := get(fmt.Sprintf("http://127.0.0.1:%d/", port)); !strings.HasPrefix(got, "error") {
		t.Errorf("instance 1 still answers %q after its service was dropped", got)
	}
	if ents, _ := os.ReadDir(sd.UnitDir); len(ents) != 0 {
		t.Errorf("unit dir still has %d entries", len(ents))
	}
}

// logTimings reports, from the deploy's own log, how long the agent took before starting
// services and how long the starts took.
func logTimings(t *testing.T, f *fixture, d *state.Deploy) {
	data, _ := os.ReadFile(f.cfg.Layout().DeployLog("web", d.ID))
	var starting, running string
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.Contains(line, `"status":"starting"`):
			starting = line
		case strings.Contains(line, `"message":"services running"`):
			running = line
		}
	}
	ts := func(line string) time.Time {
		i := strings.Index(line, `"time":"`)
		if i < 0 {
			return time.Time{}
		}
		tm, _ := time.Parse("2006-01-02T15:04:05.000Z07:00", line[i+8:i+8+24])
		return tm
	}
	t.Logf("deploy %s: queued→starting %v, starting→4 instances active %v, total %v",
		d.ID, ts(starting).Sub(d.Queued).Round(time.Millisecond), ts(running).Sub(ts(starting)).Round(time.Millisecond),
		d.Finished.Sub(d.Queued).Round(time.Millisecond))
}
