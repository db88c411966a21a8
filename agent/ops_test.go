package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
	"github.com/pushdeploy/pushdeploy/units"
)

// TestAgent_RestartRollback restarts the current release (same release, every instance a
// new process, in health-checked batches) and rolls back to the previous good release
// (current switches, every instance answers the old version), both through the app's queue.
func TestAgent_RestartRollback(t *testing.T) {
	sd := testenv.StartSystemd(t)
	hello := testenv.HelloBinary(t)
	port := testenv.FreePorts(t, 2)
	f := newFixture(t, func(c *config.Config) {
		onSystemd(t, c, sd, 200*time.Millisecond)
	})
	deploy := func(version string) string {
		t.Helper()
		f.repo.Write("VERSION", version+"\n", 0o644)
		f.repo.Write("bin/hello", hello, 0o755)
		f.repo.Write("service.json", fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": %d,
			"health": {"http": "/health", "timeout": "200ms", "interval": "100ms", "min_healthy_time": "200ms"}}}}`, port), 0o644)
		sha := f.repo.Commit("version " + version)
		f.push("deploy-production")
		r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), sha)
		if d := f.wait(r.Deploy); d.Status != state.StatusSucceeded {
			t.Fatalf("version %s: got %s (%s), want succeeded", version, d.Status, d.Error)
		}
		return sha
	}
	answers := func(want string) {
		t.Helper()
		for i := range 2 {
			if got := get(fmt.Sprintf("http://127.0.0.1:%d/", port+i)); got != want {
				t.Errorf("instance %d: got %q, want %q", i+1, got, want)
			}
		}
	}
	eng, err := f.agent.engine(t.Context(), "web")
	if err != nil {
		t.Fatal(err)
	}
	pids := func() []uint32 {
		t.Helper()
		var out []uint32
		for n := 1; n <= 2; n++ {
			st, err := eng.Manager.State(t.Context(), units.UnitName("web", "web", n))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, st.MainPID)
		}
		return out
	}

	v1 := deploy("1")
	v2 := deploy("2")

	if _, err := f.agent.Restart("web", "nope"); err == nil || !strings.Contains(err.Error(), `service "nope"`) {
		t.Errorf("restart of an unknown service: got %v, want an error naming it", err)
	}
	before := pids()
	q, err := f.agent.Restart("web", "")
	if err != nil {
		t.Fatal(err)
	}
	d := f.wait(q.ID)
	if d.Status != state.StatusSucceeded || d.Kind != state.KindRestart || d.SHA != v2 {
		t.Fatalf("restart: got %s %s of %.12s (%s), want a succeeded restart of %.12s", d.Status, d.Kind, d.SHA, d.Error, v2)
	}
	after := pids()
	for i := range before {
		if before[i] == 0 || after[i] == 0 || before[i] == after[i] {
			t.Errorf("instance %d: MainPID %d before the restart, %d after, want a new process", i+1, before[i], after[i])
		}
	}
	if got := f.current(); got != v2 {
		t.Errorf("current after restart: got %.12s, want %.12s", got, v2)
	}
	answers("hello from version 2")

	if _, err := f.agent.Rollback("web", v2[:8]); err == nil || !strings.Contains(err.Error(), "already current") {
		t.Errorf("rollback to the current release: got %v, want already current", err)
	}
	q, err = f.agent.Rollback("web", "")
	if err != nil {
		t.Fatal(err)
	}
	if q.SHA != v1 {
		t.Errorf("rollback target: got %.12s, want the previous good %.12s", q.SHA, v1)
	}
	d = f.wait(q.ID)
	if d.Status != state.StatusSucceeded || d.Kind != state.KindRollback || d.Previous != v2 {
		t.Fatalf("rollback: got %s %s from %.12s (%s), want a succeeded rollback from %.12s", d.Status, d.Kind, d.Previous, d.Error, v2)
	}
	if got := f.current(); got != v1 {
		t.Errorf("current after rollback: got %.12s, want %.12s", got, v1)
	}
	answers("hello from version 1")

	hist, err := f.agent.state.History("web", 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, h := range hist {
		kinds = append(kinds, h.Kind)
	}
	if want := []string{state.KindRollback, state.KindRestart, state.KindDeploy, state.KindDeploy}; fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("history kinds: got %v, want %v", kinds, want)
	}

	// A bad release can be rolled back to when named; the record says it is bad.
	if err := f.agent.store.SetMark("web", v2, release.Bad, "test says so"); err != nil {
		t.Fatal(err)
	}
	q, err = f.agent.Rollback("web", v2[:10])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(q.Note, "marked bad (test says so)") {
		t.Errorf("rollback to a bad release: note %q does not say it is bad", q.Note)
	}
	if d := f.wait(q.ID); d.Status != state.StatusSucceeded || f.current() != v2 {
		t.Errorf("rollback to the bad release: got %s (%s), current %.12s", d.Status, d.Error, f.current())
	}
}
