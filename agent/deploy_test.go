package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/state"
)

func TestAgent_deploy(t *testing.T) {
	f := newFixture(t, nil)
	sha := f.commit("1")
	f.push("deploy-production")
	r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), sha)
	if r.Code != 202 {
		t.Fatalf("got %d %s, want 202", r.Code, r.Error)
	}
	d := f.wait(r.Deploy)
	if d.Status != state.StatusSucceeded {
		t.Fatalf("got status %s (%s), want succeeded", d.Status, d.Error)
	}
	if got := f.current(); got != sha {
		t.Errorf("current: got %s, want %s", got, sha)
	}
	got, err := os.ReadFile(filepath.Join(f.cfg.Layout().Current("web"), "VERSION"))
	if err != nil || string(got) != "1\n" {
		t.Errorf("current/VERSION: got %q (%v), want %q", got, err, "1\n")
	}
	log, err := os.ReadFile(f.cfg.Layout().DeployLog("web", d.ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if !strings.Contains(line, `"deploy":"`+d.ID+`"`) {
			t.Errorf("log line without the deploy id: %s", line)
		}
	}
	if strings.Contains(string(log), testSecret) {
		t.Error("the deploy log contains the webhook secret")
	}
}

// gate is a file a deploy script waits for, so a test can hold a deploy in running-script.
type gate string

func newGate(t *testing.T) gate { return gate(filepath.Join(t.TempDir(), "open")) }
func (g gate) script() string   { return "while [ ! -e " + string(g) + " ]; do sleep 0.05; done" }
func (g gate) open(t *testing.T) {
	if err := os.WriteFile(string(g), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAgent_newestWins(t *testing.T) {
	g := newGate(t)
	script := writeScript(t, g.script())
	f := newFixture(t, func(c *config.Config) { c.Apps["web"].Script = config.Argv{script} })
	var shas, ids []string
	for _, v := range []string{"1", "2", "3"} {
		shas = append(shas, f.commit(v))
		f.push("deploy-production")
		r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), shas[len(shas)-1])
		if r.Code != 202 {
			t.Fatalf("push %s: got %d %s", v, r.Code, r.Error)
		}
		ids = append(ids, r.Deploy)
		if v == "1" {
			f.waitStatus(ids[0], state.StatusScript)
		}
	}
	g.open(t)
	first, second, third := f.wait(ids[0]), f.wait(ids[1]), f.wait(ids[2])
	// The first was running when the others came: it may finish, or go stale because the
	// branch has moved on by the time it asked; what it must not do is block the newest.
	if first.Status != state.StatusSucceeded {
		t.Errorf("first: got %s, want succeeded", first.Status)
	}
	if second.Status != state.StatusSuperseded || !strings.Contains(second.Note, ids[2]) {
		t.Errorf("second: got %s (%q), want superseded by %s", second.Status, second.Note, ids[2])
	}
	if third.Status != state.StatusSucceeded {
		t.Errorf("third: got %s (%s), want succeeded", third.Status, third.Error)
	}
	if got := f.current(); got != shas[2] {
		t.Errorf("current: got %.12s, want %.12s", got, shas[2])
	}
}

func (f *fixture) waitStatus(id string, want state.Status) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if d, err := f.agent.state.Get("web", id); err == nil && d.Status == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("deploy %s never reached %s", id, want)
}

func TestAgent_stalePush(t *testing.T) {
	f := newFixture(t, nil)
	old := f.commit("1")
	f.push("deploy-production")
	r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), old)
	f.wait(r.Deploy)
	newer := f.commit("2")
	f.push("deploy-production")
	r = f.deliver("refs/heads/deploy-production", old, newer)
	f.wait(r.Deploy)

	// The webhook for the first push is delivered again, late (a new delivery id).
	late := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), old)
	d := f.wait(late.Deploy)
	if d.Status != state.StatusStale || !strings.Contains(d.Note, "moved on") {
		t.Errorf("late push: got %s (%q), want stale", d.Status, d.Note)
	}
	if got := f.current(); got != newer {
		t.Errorf("current: got %.12s, want %.12s (a late webhook rolled the host back)", got, newer)
	}

	// A push whose branch was deleted before the deploy started.
	third := f.commit("3")
	f.push("deploy-production")
	f.bare.Git("update-ref", "-d", "refs/heads/deploy-production")
	gone := f.wait(f.deliver("refs/heads/deploy-production", newer, third).Deploy)
	if gone.Status != state.StatusStale || !strings.Contains(gone.Note, "deleted") {
		t.Errorf("deleted branch: got %s (%q), want stale", gone.Status, gone.Note)
	}
}

func TestAgent_script(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantErr   string // "" for success
		wantInLog string
	}{
		{"succeeds", `echo "args=$1 $2 $3 app=$PUSHDEPLOY_APP dir=$PUSHDEPLOY_RELEASE_DIR prev=$PUSHDEPLOY_PREVIOUS_SHA"; pwd`, "", "args=acme/web deploy-production"},
		{"fails", `echo about to fail >&2; exit 3`, "exited with status 3", "about to fail"},
		{"killed by signal", `kill -KILL $$`, "killed by signal", ""},
		{"hostile output", `printf '%s\n' '$(rm -rf /); "quoted" \\back'`, "", `$(rm -rf /)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := writeScript(t, tt.body)
			f := newFixture(t, func(c *config.Config) { c.Apps["web"].Script = config.Argv{script} })
			// A first release without the script's verdict mattering: make it current.
			good := f.commit("1")
			f.push("deploy-production")
			f.agent.apps["web"].cfg.Script = nil
			f.wait(f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), good).Deploy)
			f.agent.apps["web"].cfg.Script = config.Argv{script}

			next := f.commit("2")
			f.push("deploy-production")
			d := f.wait(f.deliver("refs/heads/deploy-production", good, next).Deploy)
			log, _ := os.ReadFile(f.cfg.Layout().DeployLog("web", d.ID))
			if tt.wantErr == "" {
				if d.Status != state.StatusSucceeded || f.current() != next {
					t.Fatalf("got %s (%s), current %.12s; want succeeded on %.12s", d.Status, d.Error, f.current(), next)
				}
				if strings.Contains(tt.body, "PREVIOUS") && !strings.Contains(string(log), "prev="+good) {
					t.Errorf("script did not get PUSHDEPLOY_PREVIOUS_SHA=%s", good)
				}
			} else {
				if d.Status != state.StatusFailed || !strings.Contains(d.Error, tt.wantErr) {
					t.Fatalf("got %s (%q), want failed with %q", d.Status, d.Error, tt.wantErr)
				}
				if got := f.current(); got != good {
					t.Errorf("current: got %.12s, want %.12s kept", got, good)
				}
			}
			if !strings.Contains(string(log), strings.ReplaceAll(tt.wantInLog, `"`, `\"`)) {
				t.Errorf("log does not contain %q:\n%s", tt.wantInLog, log)
			}
		})
	}
}

func TestAgent_resumeAfterRestart(t *testing.T) {
	g := newGate(t)
	script := writeScript(t, g.script())
	f := newFixture(t, func(c *config.Config) { c.Apps["web"].Script = config.Argv{script} })
	f.agent.ShutdownGrace = 100 * time.Millisecond
	sha := f.commit("1")
	f.push("deploy-production")
	r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), sha)
	f.waitStatus(r.Deploy, state.StatusScript)
	f.stop() // the grace runs out: the deploy is interrupted and goes back to queued
	st, err := state.Open(f.cfg.Layout().StateDB(), true, 10)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := st.Get("web", r.Deploy)
	st.Close()
	if d.Status != state.StatusQueued {
		t.Fatalf("after shutdown: got %s, want queued", d.Status)
	}
	if f.current() != "" {
		t.Fatal("an interrupted deploy switched current")
	}
	g.open(t)
	f.start()
	if d := f.wait(r.Deploy); d.Status != state.StatusSucceeded {
		t.Fatalf("after restart: got %s (%s), want succeeded", d.Status, d.Error)
	}
	if f.current() != sha {
		t.Errorf("current: got %.12s, want %.12s", f.current(), sha)
	}
}

// TestAgent_resumeWentLive: deploys an agent killed left unfinished, replaced at restart
// by a newer accepted one. The one that had switched `current` (killed before it recorded
// its end) is recorded succeeded: it put the running release there. The one that had not
// is recorded superseded. The newest runs again.
func TestAgent_resumeWentLive(t *testing.T) {
	f := newFixture(t, nil)
	v1 := f.commit("1")
	d1 := f.pushAndDeploy(v1)
	v2 := f.commit("2")
	d2 := f.pushAndDeploy(v2)
	if d1.Status != state.StatusSucceeded || d2.Status != state.StatusSucceeded || f.current() != v2 {
		t.Fatalf("set-up: %s, %s, current %.12s", d1.Status, d2.Status, f.current())
	}
	f.stop()
	st, err := state.Open(f.cfg.Layout().StateDB(), false, 10)
	if err != nil {
		t.Fatal(err)
	}
	d3 := *d2
	var ids state.IDs
	d3.ID, d3.Status, d3.Note, d3.Finished = ids.Next(time.Now().Add(time.Second)), state.StatusQueued, "", time.Time{}
	for _, d := range []*state.Deploy{d1, d2} { // both killed as they started their services
		d.Status, d.Note, d.Finished = state.StatusStarting, "", time.Time{}
	}
	for _, d := range []*state.Deploy{d1, d2, &d3} {
		if err := st.Save(d); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	f.start()
	if d := f.wait(d3.ID); d.Status != state.StatusSucceeded {
		t.Fatalf("resumed deploy: got %s (%s), want succeeded", d.Status, d.Error)
	}
	for _, c := range []struct {
		d    *state.Deploy
		want state.Status
	}{{d1, state.StatusSuperseded}, {d2, state.StatusSucceeded}} {
		if d := f.wait(c.d.ID); d.Status != c.want {
			t.Errorf("deploy of %.12s, killed while starting: got %s (%s), want %s", d.SHA, d.Status, d.Note, c.want)
		}
	}
}

func TestAgent_retention(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.Apps["web"].KeepReleases = 2 })
	var shas []string
	for _, v := range []string{"1", "2", "3", "4"} {
		shas = append(shas, f.commit(v))
		f.push("deploy-production")
		f.wait(f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), shas[len(shas)-1]).Deploy)
	}
	rels, err := f.agent.store.List("web")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rels {
		got = append(got, r.SHA[:7])
	}
	want := []string{shas[3][:7], shas[2][:7]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("releases kept: got %v, want %v", got, want)
	}
}

// TestAgent_staleCatchesUp: a push's deploy finds the branch moved on to a commit whose
// webhook never came (sent while the agent was down): the agent deploys the branch's tip
// at once, as a catch-up, not at the next reconcile_interval.
func TestAgent_staleCatchesUp(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.ReconcileInterval = time.Hour })
	v1 := f.commit("1")
	if d := f.pushAndDeploy(v1); d.Status != state.StatusSucceeded {
		t.Fatalf("first push: got %s (%s)", d.Status, d.Error)
	}
	v2 := f.commit("2")
	v3 := f.commit("3")
	f.push("deploy-production")
	r := f.deliver("refs/heads/deploy-production", v1, v2) // v3's never comes
	if d := f.wait(r.Deploy); d.Status != state.StatusStale {
		t.Fatalf("deploy of %.12s: got %s, want stale", v2, d.Status)
	}
	d := f.waitFinal(v3)
	if d.Kind != state.KindReconcile || d.Status != state.StatusSucceeded || f.current() != v3 {
		t.Errorf("after a stale deploy: %s %s of %.12s, current %.12s; want a catch-up of %.12s that succeeded",
			d.Kind, d.Status, d.SHA, f.current(), v3)
	}
}

// TestAgent_resumeEndsLeftScript: an agent killed with SIGKILL while a deploy's script ran
// left the script's process group running (here: a shell and its background child, made
// the way procgroup starts scripts). The next start ends that group before the deploy runs
// again, so two runs of the script never overlap, and the deploy then succeeds.
func TestAgent_resumeEndsLeftScript(t *testing.T) {
	f := newFixture(t, nil)
	sha := f.commit("1")
	f.push("deploy-production")
	f.stop()
	var ids state.IDs
	d := &state.Deploy{ID: ids.Next(time.Now()), App: "web", Kind: state.KindDeploy, SHA: sha,
		Branch: "deploy-production", Status: state.StatusScript, Queued: time.Now().UTC()}
	pidFile := filepath.Join(t.TempDir(), "pid")
	left := exec.Command("/bin/sh", "-c", "sleep 60 & echo $! >$PIDFILE; wait")
	left.Env = []string{"PIDFILE=" + pidFile, "PUSHDEPLOY_DEPLOY_ID=" + d.ID}
	left.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { left.Wait(); close(exited) }()
	t.Cleanup(func() { syscall.Kill(-left.Process.Pid, syscall.SIGKILL); <-exited })
	d.ScriptPGID = left.Process.Pid
	st, err := state.Open(f.cfg.Layout().StateDB(), false, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Save(d); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var child int
	for range 200 { // the shell writes its child's pid a moment after it starts
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if child == 0 {
		t.Fatal("the left script's child did not start")
	}

	f.start()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the script left running was not ended at start")
	}
	if err := syscall.Kill(child, 0); err == nil {
		if stat, _ := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); !strings.Contains(string(stat), ") Z ") {
			t.Errorf("the left script's background child %d still runs", child)
		}
	}
	if got := f.wait(d.ID); got.Status != state.StatusSucceeded || got.ScriptPGID != 0 {
		t.Errorf("resumed deploy: got %s (%s), script_pgid %d; want succeeded, 0", got.Status, got.Error, got.ScriptPGID)
	}
}
