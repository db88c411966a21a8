package packaging

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// webUnits are the demo app's instances on a host that followed the README.
var webUnits = []string{"pushdeploy-web-web@1.service", "pushdeploy-web-web@2.service"}

// fetchScript prints what each URL given answers, one line each, from inside the host
// (hello listens on 127.0.0.1 only), independently of pushdeploy.
const fetchScript = `import sys, urllib.request
for u in sys.argv[1:]:
    print(urllib.request.urlopen(u, timeout=5).read().decode().strip())`

// checkInstances checks both instances are active as dynamic users of the current
// release, and answer version.
func checkInstances(t *testing.T, h *testenv.Host, version string) {
	t.Helper()
	cur := current(t, h)
	for _, u := range webUnits {
		if got := prop(t, h, u, "ActiveState"); got != "active" {
			t.Errorf("%s: %s, want active", u, got)
			continue
		}
		if got := prop(t, h, u, "DynamicUser"); got != "yes" {
			t.Errorf("%s: DynamicUser=%s, want yes", u, got)
		}
		uid := regexp.MustCompile(`(?m)^Uid:\t(\d+)`).FindStringSubmatch(run(t, h, "cat", "/proc/"+prop(t, h, u, "MainPID")+"/status"))
		if n, _ := strconv.Atoi(uid[1]); n < 61184 || n > 65519 {
			t.Errorf("%s runs as uid %s, want a dynamic user (61184–65519)", u, uid[1])
		}
		if exec := prop(t, h, u, "ExecStart"); !strings.Contains(exec, "/releases/"+cur+"/") {
			t.Errorf("%s runs %s, want the current release %.7s", u, exec, cur)
		}
	}
	got := run(t, h, "python3", "-c", fetchScript, "http://127.0.0.1:8080/", "http://127.0.0.1:8081/")
	if want := strings.Repeat("hello from version "+version+"\n", 2); got+"\n" != want {
		t.Errorf("the instances answer %q, want %q", got, want)
	}
}

// rss returns the agent's VmRSS and VmHWM from /proc/<MainPID>/status.
func rss(t *testing.T, h *testenv.Host) string {
	t.Helper()
	status := run(t, h, "cat", "/proc/"+prop(t, h, agentUnit, "MainPID")+"/status")
	var f []string
	for _, k := range []string{"VmRSS", "VmHWM"} {
		m := regexp.MustCompile(`(?m)^` + k + `:\s+(\d+ kB)`).FindStringSubmatch(status)
		if m == nil {
			t.Fatalf("no %s in the agent's status:\n%s", k, status)
		}
		f = append(f, k+" "+m[1])
	}
	return strings.Join(f, ", ")
}

// sampleRSS samples the agent's VmRSS every 200 ms into peak (the highest) until stop is
// called.
func sampleRSS(t *testing.T, h *testenv.Host, peak *string) (stop func()) {
	t.Helper()
	pid := prop(t, h, agentUnit, "MainPID")
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // waited for by stop
		defer wg.Done()
		best := 0
		for {
			out, _ := h.Run(t.Context(), "cat", "/proc/"+pid+"/status")
			if m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(out); m != nil {
				if n, _ := strconv.Atoi(string(m[1])); n > best {
					best = n
				}
			}
			select {
			case <-done:
				*peak = fmt.Sprintf("VmRSS %d kB", best)
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// deployCount returns how many deploys the app web has on record.
func deployCount(t *testing.T, h *testenv.Host) int {
	t.Helper()
	var ds []state.Deploy
	if err := json.Unmarshal([]byte(run(t, h, "pushdeploy", "history", "web", "--json")), &ds); err != nil {
		t.Fatalf("pushdeploy history web --json: %v", err)
	}
	return len(ds)
}

// mainPIDs returns the MainPID of the agent and of each instance.
func mainPIDs(t *testing.T, h *testenv.Host) []string {
	t.Helper()
	var pids []string
	for _, u := range append([]string{agentUnit}, webUnits...) {
		pids = append(pids, prop(t, h, u, "MainPID"))
	}
	return pids
}

// waitActive waits until the agent and every instance are active, as after a boot.
func waitActive(t *testing.T, h *testenv.Host) {
	t.Helper()
	waitFor(t, 30*time.Second, "agent and instances active", func() bool {
		for _, u := range append([]string{agentUnit}, webUnits...) {
			if out, _ := try(t, h, "systemctl", "is-active", u); out != "active" {
				return false
			}
		}
		return true
	})
}

// checkReboot reboots the host and checks the agent and the instances came back on their
// own, on the same release, without a deploy.
func checkReboot(t *testing.T, h *testenv.Host) {
	before, cur, n := mainPIDs(t, h), current(t, h), deployCount(t, h)
	start := time.Now()
	h.Reboot(t)
	waitActive(t, h)
	t.Logf("figure: reboot to agent and instances active %v", time.Since(start).Round(time.Millisecond))
	after := mainPIDs(t, h)
	for i, u := range append([]string{agentUnit}, webUnits...) {
		if after[i] == before[i] {
			t.Errorf("%s: MainPID %s before and after the reboot", u, after[i])
		}
	}
	if got := current(t, h); got != cur {
		t.Errorf("after the reboot: current %s, want %s", got, cur)
	}
	if got := deployCount(t, h); got != n {
		t.Errorf("after the reboot: %d deploys on record, want %d (no deploy)", got, n)
	}
	checkInstances(t, h, "2")
}

// checkCrashMidRollout delivers sha, whose batches each take 4 s (settle, then 3 s healthy), powers the host off
// without stopping anything once the first batch started (`systemctl poweroff -ff`:
// every process is killed, as by a power cut), boots it, and checks the agent resumed the
// deploy and ended it succeeded or reverted, with the host consistent.
func checkCrashMidRollout(t *testing.T, h *testenv.Host, deliver func(*testing.T, string) string, sha string) {
	id := deliver(t, sha)
	waitFor(t, 30*time.Second, "first batch of the slow deploy", func() bool {
		s := prop(t, h, agentUnit, "StatusText")
		return strings.Contains(s, sha[:12]) && strings.Contains(s, "batch 1 of 2")
	})
	try(t, h, "systemctl", "poweroff", "-ff")
	h.Reboot(t)
	d := waitDeploy(t, h, "web", id, sha)
	t.Logf("deploy %s after the crash: %s (%s) %s", d.ID, d.Status, d.Note, d.Error)
	if !strings.Contains(d.Note, "resumed") {
		t.Errorf("deploy %s was not resumed after the crash: note %q", d.ID, d.Note)
	}
	var want string
	switch d.Status {
	case state.StatusSucceeded:
		want = "4"
	case state.StatusFailed:
		want = "2"
	default:
		t.Fatalf("deploy %s after the crash: %s, want succeeded or failed and reverted", d.ID, d.Status)
	}
	waitActive(t, h)
	run(t, h, "pushdeploy", "releases", "check", "web")
	checkInstances(t, h, want)
}

// checkWatchdog stops the agent (SIGSTOP) under a 3 s watchdog and times the restart.
func checkWatchdog(t *testing.T, h *testenv.Host) {
	h.WriteFile(t, "/etc/systemd/system/pushdeploy.service.d/watchdog.conf", []byte("[Service]\nWatchdogSec=3s\n"), 0o644)
	run(t, h, "systemctl", "daemon-reload")
	run(t, h, "systemctl", "restart", agentUnit)
	pid := prop(t, h, agentUnit, "MainPID")
	restartSec := prop(t, h, agentUnit, "RestartUSec")
	start := time.Now()
	run(t, h, "systemctl", "kill", "-s", "STOP", agentUnit)
	waitFor(t, 30*time.Second, "agent restarted by the watchdog", func() bool {
		return prop(t, h, agentUnit, "MainPID") != pid && prop(t, h, agentUnit, "ActiveState") == "active"
	})
	took := time.Since(start)
	t.Logf("figure: WatchdogSec=3s, RestartSec=%s: SIGSTOP to the agent ready again %v; with the shipped WatchdogSec=30s expect about %v",
		restartSec, took.Round(10*time.Millisecond), (took + 27*time.Second).Round(100*time.Millisecond))
	if got := run(t, h, "journalctl", "--no-pager", "-u", agentUnit, "-o", "cat"); !strings.Contains(got, "atchdog") {
		t.Errorf("journal does not mention the watchdog:\n%.3000s", got)
	}
}
