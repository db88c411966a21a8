package rollout

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/health"
	"github.com/pushdeploy/pushdeploy/units"
)

// checkedRelease is release(version, n) whose service web has a command health check: its
// check unit's template is installed with the service's.
func checkedRelease(version string, n int) (Release, *Installed) {
	spec := &units.Spec{Services: map[string]*units.Service{"web": {Name: "web", Instances: n,
		Rollout: units.Rollout{MaxParallel: "1", AutoRevert: true},
		Health: &units.Health{Command: []string{"bin/check", "--quick"}, Timeout: 50 * time.Millisecond,
			Interval: 10 * time.Millisecond, MinHealthyTime: 20 * time.Millisecond, HealthyDeadline: 2 * time.Second}}}}
	in := release(version, n)
	in.Files = append(in.Files, File{Name: units.CheckUnitName("shop", "web", 0), Content: version})
	return Release{SHA: version, Dir: "/srv/shop/releases/" + version, Spec: spec}, in
}

// checkUnitEvents keeps the events that start or stop a check unit, once each in a row: how
// many checks pass before min_healthy_time is up depends on timing.
func checkUnitEvents(events []string) []string {
	var out []string
	for _, e := range events {
		if (strings.HasPrefix(e, "start web.check@") || strings.HasPrefix(e, "stop web.check@")) && (len(out) == 0 || out[len(out)-1] != e) {
			out = append(out, e)
		}
	}
	return out
}

// TestEngine_commandCheck rolls out releases whose health check is a command: the engine
// starts the instance's check unit through the manager for every check (never running the
// command itself), a failed check unit is quoted with its journal lines and stopped (its
// failed state reset), and a revert checks the previous release with its own check unit.
func TestEngine_commandCheck(t *testing.T) {
	t.Parallel()
	m := newFakeManager()
	e := &Engine{Manager: m, Settle: 1, Poll: 1}
	log := zerolog.New(zerolog.NewTestWriter(t))
	rel1, in1 := checkedRelease("v1", 1)
	p, err := e.Plan("shop", rel1, nil, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := e.Deploy(t.Context(), p, in1, nil)
	if err != nil {
		t.Fatalf("v1: %v", err)
	}
	if got := checkUnitEvents(m.takeEvents()); !slices.Equal(got, []string{"start web.check@1 v1"}) {
		t.Errorf("v1 check events: got %q, want only starts of web.check@1 v1", got)
	}

	rel2, in2 := checkedRelease("v2", 1)
	m.checkFails["v2 web.check@1"] = true
	if p, err = e.Plan("shop", rel2, &rel1, nil, log); err != nil {
		t.Fatal(err)
	}
	got, err := e.Deploy(t.Context(), p, in2, prev)
	checkErr(t, err, []string{
		`pushdeploy-shop-web@1.service: check command ["bin/check" "--quick"]`,
		`command ["bin/check" "--quick"] in pushdeploy-shop-web.check@1.service: job failed (Result exit-code); last 1 journal lines:
    web.check@1 v2 says boom`,
		"previous units put back and healthy",
	})
	if got != prev {
		t.Errorf("v2: got installed %v, want v1's", got)
	}
	events := checkUnitEvents(m.takeEvents())
	want := []string{"start web.check@1 v2", "stop web.check@1", "start web.check@1 v1"}
	if len(events) < 3 || !slices.Equal(events[:2], want[:2]) || events[len(events)-1] != want[2] {
		t.Errorf("v2 check events: got %q, want failed v2 checks each stopped, then v1's revert checks: %q", events, want)
	}
	if slices.Contains(m.running(), "web.check@1 v2") {
		t.Errorf("a failed check unit is left failed: %v", m.running())
	}
}

// TestEngine_commandCheck_timeout: a check unit still running when its timeout ends is
// stopped, and the check says it timed out.
func TestEngine_commandCheck_timeout(t *testing.T) {
	t.Parallel()
	m := newFakeManager()
	e := &Engine{Manager: m, Settle: 1, Poll: 1}
	rel, in := checkedRelease("v1", 1)
	m.checkHangs["v1 web.check@1"] = true
	p, err := e.Plan("shop", rel, nil, nil, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Deploy(t.Context(), p, in, nil)
	checkErr(t, err, []string{`command ["bin/check" "--quick"] in pushdeploy-shop-web.check@1.service: timed out after`})
	if events := checkUnitEvents(m.takeEvents()); !slices.Contains(events, "stop web.check@1") {
		t.Errorf("check events %q: the check unit that timed out was not stopped", events)
	}
}

// TestEngine_checker_Redact: what the engine quotes of a failed HTTP check (the instance's
// answer, from a real HTTP server) goes through Redact, like its journal lines.
func TestEngine_checker_Redact(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "cannot reach postgres://app:hunter2-secret@db/app", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	port, err := strconv.Atoi(srv.URL[strings.LastIndexByte(srv.URL, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, 1)
	f.e.Redact = func(s string) string { return strings.ReplaceAll(s, "hunter2-secret", "<redacted>") }
	const unit = "pushdeploy-shop-web@1.service"
	spec := health.Spec{HTTP: "/health", Timeout: time.Second, Interval: 10 * time.Millisecond,
		MinHealthyTime: 20 * time.Millisecond, HealthyDeadline: 300 * time.Millisecond}
	since := time.Now().Add(-time.Minute)
	running := func(context.Context) (health.UnitState, error) {
		return health.UnitState{ActiveState: "active", SubState: "running", MainPID: 1, Since: since}, nil
	}
	check := f.e.checker(map[string]health.Instance{unit: {Name: unit, Spec: spec, Probe: health.HTTPProbe(port, "/health"), State: running}},
		"v2", zerolog.Nop())
	err = check(t.Context(), []string{unit})
	if err == nil {
		t.Fatal("a check answered 503 passed")
	}
	if strings.Contains(err.Error(), "hunter2-secret") || !strings.Contains(err.Error(), "postgres://app:<redacted>@db/app") {
		t.Errorf("got %q, want the answer quoted with the secret masked", err)
	}
}
