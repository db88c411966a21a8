package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// TestE2E_systemdService runs the agent binary as a Type=notify service with a watchdog
// under a real systemd user manager (its own journald): the start completes on READY=1,
// the unit's status line follows the queue, its log is in the journal with priorities and
// the deploy id as a field, and a SIGSTOPped agent is restarted by the watchdog.
func TestE2E_systemdService(t *testing.T) {
	sd := testenv.StartSystemd(t)
	e := setupE2E(t)
	// The deploy waits at the gate, then its script fails: an error in the log.
	script := "#!/bin/sh\nwhile [ -e " + e.dir + "/gate-closed ]; do sleep 0.05; done\necho 'deploy script says no' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(e.dir, "deploy.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	const unit = "pushdeploy-e2e.service"
	start := time.Now()
	out, err := sd.Command("systemd-run", "--user", "--unit="+unit, "-p", "Type=notify", "-p", "WatchdogSec=2",
		"-p", "Restart=on-failure", "-p", "RestartSec=100ms", "-p", "TimeoutStopSec=30",
		e.bin, "agent", "--config", e.config).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-run: %v\n%s", err, out)
	}
	t.Cleanup(func() { sd.Systemctl(t, "stop", unit) }) // before the test's directories go
	t.Logf("start job done (READY=1) %v after systemd-run", time.Since(start).Round(time.Millisecond))
	show := func(prop string) string { return sd.Systemctl(t, "show", "-p", prop, "--value", unit) }
	if got := show("ActiveState") + "/" + show("SubState"); got != "active/running" {
		t.Fatalf("after the start job: %s, want active/running", got)
	}
	if got := show("WatchdogUSec"); got != "2s" {
		t.Errorf("WatchdogUSec: got %s, want 2s", got)
	}
	awaitProp(t, show, "StatusText", "idle; 1 app")

	closed := filepath.Join(e.dir, "gate-closed")
	os.WriteFile(closed, nil, 0o644)
	e.repo.Write("VERSION", "1\n", 0o644)
	sha := e.repo.Commit("one")
	e.repo.Git("push", e.bare.Path(), "main:deploy-production")
	awaitProp(t, show, "StatusText", "deploying web "+sha[:12]+": running script")
	os.Remove(closed)
	d := e.waitFor(sha)
	if d.Status != "failed" {
		t.Fatalf("deploy: got %s, want failed", d.Status)
	}
	awaitProp(t, show, "StatusText", "idle; 1 app")

	// -p err shows the errors only, and the deploy's carries its id and app as fields.
	if err := sd.SyncJournal(t.Context()); err != nil {
		t.Fatal(err)
	}
	errs := journalEntries(t, sd, "--user-unit="+unit, "-p", "err")
	found := false
	for _, en := range errs {
		if p, _ := strconv.Atoi(en["PRIORITY"]); p > 3 {
			t.Errorf("-p err shows priority %d: %q", p, en["MESSAGE"])
		}
		if strings.HasPrefix(en["MESSAGE"], "deploy failed") && en["PUSHDEPLOY_DEPLOY"] == d.ID && en["PUSHDEPLOY_APP"] == "web" {
			found = true
			t.Logf("journal: %s", en["MESSAGE"])
		}
	}
	if !found {
		t.Errorf("-p err: no \"deploy failed\" entry with PUSHDEPLOY_DEPLOY=%s in %q", d.ID, errs)
	}
	all := journalEntries(t, sd, "--user-unit="+unit, "PUSHDEPLOY_DEPLOY="+d.ID)
	if len(all) <= len(errs) || all[0]["PRIORITY"] != "6" || all[0]["SYSLOG_IDENTIFIER"] != "pushdeploy" {
		t.Errorf("the deploy's entries: got %d, the first %q; want its info lines too, at priority 6", len(all), all[0])
	}

	// A stopped agent sends no pings: systemd kills it at the watchdog timeout and starts
	// it again.
	pid := show("MainPID")
	stopped := time.Now()
	sd.Systemctl(t, "kill", "-s", "STOP", unit)
	deadline := stopped.Add(30 * time.Second)
	for show("NRestarts") == "0" || show("ActiveState") != "active" || show("MainPID") == pid {
		if time.Now().After(deadline) {
			t.Fatalf("no watchdog restart 30 s after SIGSTOP: %s %s, MainPID %s, NRestarts %s",
				show("ActiveState"), show("SubState"), show("MainPID"), show("NRestarts"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(stopped)
	t.Logf("SIGSTOP to watchdog restart, agent ready again: %v", took.Round(time.Millisecond))
	if took < time.Second {
		t.Errorf("restarted %v after SIGSTOP: before the watchdog could have fired", took)
	}
	if err := sd.SyncJournal(t.Context()); err != nil {
		t.Fatal(err)
	}
	fired := false
	for _, en := range journalEntries(t, sd, "--user-unit="+unit) {
		if strings.Contains(en["MESSAGE"], "Watchdog timeout") {
			fired = true
			usec, _ := strconv.ParseInt(en["__REALTIME_TIMESTAMP"], 10, 64)
			at := time.UnixMicro(usec)
			t.Logf("SIGSTOP to watchdog timeout: %v; then to ready again: %v",
				at.Sub(stopped).Round(time.Millisecond), stopped.Add(took).Sub(at).Round(time.Millisecond))
		}
	}
	if !fired {
		t.Errorf("the journal does not say the watchdog fired")
	}
	awaitProp(t, show, "StatusText", "idle; 1 app")
}

// awaitProp polls a unit property until it has the wanted value.
func awaitProp(t *testing.T, show func(string) string, prop, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for got := show(prop); got != want; got = show(prop) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %q, want %q", prop, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// journalEntries returns the manager's journal entries that match args, as `journalctl -o json`
// gives them (field → value; values that are not text are left out).
func journalEntries(t *testing.T, sd *testenv.Systemd, args ...string) []map[string]string {
	t.Helper()
	cmd := sd.Command("journalctl", append([]string{"-D", filepath.Join(sd.JournalDir, "journal"), "--no-pager", "-q", "-o", "json"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("journalctl %s: %v", strings.Join(args, " "), err)
	}
	var entries []map[string]string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("journalctl: %v: %s", err, sc.Text())
		}
		en := map[string]string{}
		for k, v := range raw {
			if s, ok := v.(string); ok {
				en[k] = s
			}
		}
		entries = append(entries, en)
	}
	return entries
}
