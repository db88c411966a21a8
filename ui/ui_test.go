package ui_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
	"github.com/pushdeploy/pushdeploy/ui"
)

// fakeBackend answers with its fields; follow, when set, is the log follower.
type fakeBackend struct {
	apps    []ui.App
	history map[string][]state.Deploy
	logs    map[string]string
	follow  func(ctx context.Context, emit func([]byte, int64) error) (*state.Deploy, error)
}

func (f *fakeBackend) Apps(context.Context) ([]ui.App, error) { return f.apps, nil }

func (f *fakeBackend) History(_ context.Context, app string, limit int) ([]state.Deploy, error) {
	h, ok := f.history[app]
	if !ok {
		return nil, fmt.Errorf("app %q: %w", app, state.ErrNotFound)
	}
	if limit > 0 && len(h) > limit {
		h = h[:limit]
	}
	return h, nil
}

func (f *fakeBackend) Deploy(_ context.Context, id string) (*state.Deploy, []byte, error) {
	for _, h := range f.history {
		for i := range h {
			if h[i].ID == id {
				d := h[i]
				return &d, []byte(f.logs[id]), nil
			}
		}
	}
	return nil, nil, fmt.Errorf("deploy %s: %w", id, state.ErrNotFound)
}

func (f *fakeBackend) Follow(ctx context.Context, _, _ string, _ int64, emit func([]byte, int64) error) (*state.Deploy, error) {
	return f.follow(ctx, emit)
}

const sha1 = "1111111111111111111111111111111111111111"

func newFake() *fakeBackend {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	running := state.Deploy{ID: "20250301-120500.000-bbbbbb", App: "web", Kind: state.KindDeploy, SHA: strings.Repeat("2", 40),
		Branch: "deploy-production", Status: state.StatusScript, Queued: t0.Add(5 * time.Minute), Started: t0.Add(5 * time.Minute)}
	done := state.Deploy{ID: "20250301-120000.000-aaaaaa", App: "web", Kind: state.KindDeploy, SHA: sha1, Branch: "deploy-production",
		Status: state.StatusFailed, Error: "script: exit status 3\nmore", Queued: t0, Started: t0, Finished: t0.Add(2 * time.Second)}
	return &fakeBackend{
		apps: []ui.App{{Name: "web", Repo: "acme/web", Since: t0,
			Current: &release.Release{SHA: sha1, Mark: release.Good, Branch: "deploy-production"},
			Active:  &running,
			Services: []ui.Service{{Name: "api", Instances: []ui.Instance{
				{Unit: "pushdeploy-web-api@1.service", State: "active", SubState: "running", Since: t0,
					Health: &ui.Verdict{Verdict: "healthy", Checks: 4, Took: 3100 * time.Millisecond, At: t0, Release: sha1}},
				{Unit: "pushdeploy-web-api@2.service", State: "failed", SubState: "failed"},
			}}}}},
		history: map[string][]state.Deploy{"web": {running, done}},
		logs: map[string]string{
			done.ID:    `{"level":"info","time":"2025-03-01T12:00:00.100Z","message":"deploy status","status":"fetching"}` + "\n" + `{"level":"info","message":"script output","line":"<b>hi</b>"}` + "\n",
			running.ID: `{"level":"info","time":"2025-03-01T12:05:00.100Z","message":"deploy status","status":"running-script"}` + "\n",
		},
	}
}

func get(t *testing.T, h http.Handler, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

func TestHandler_pages(t *testing.T) {
	h := ui.Handler(newFake(), ui.Options{})
	tests := []struct {
		path     string
		code     int
		want     []string
		dontWant []string
	}{
		{"/", 200, []string{`<meta name="viewport"`, "acme/web", "111111111111", `class="mark m-good"`, "pushdeploy-web-api@1.service",
			"healthy</span> after 4 check(s), 3.1s", `st-failed`, `href="./deploys/20250301-120000.000-aaaaaa"`, "script: exit status 3", "running-script",
			`href="./static/style.css"`}, []string{"more</td>", "http://", "https://"}},
		{"/apps/web", 200, []string{"every deploy kept (2)", `href="../deploys/20250301-120500.000-bbbbbb"`}, nil},
		{"/apps/nope", 404, nil, nil},
		{"/deploys/20250301-120000.000-aaaaaa", 200, []string{"&lt;b&gt;hi&lt;/b&gt;", `<span class="step">fetching</span>`, "script: exit status 3\nmore", `id="live" class="live" hidden`},
			[]string{"data-events", "<b>hi"}},
		{"/deploys/20250301-120500.000-bbbbbb", 200, []string{`data-events="../deploys/20250301-120500.000-bbbbbb/events?from=`, `src="../static/follow.js"`}, nil},
		{"/deploys/nope", 404, nil, nil},
		{"/static/style.css", 200, []string{"@media (max-width"}, nil},
		{"/static/follow.js", 200, []string{"EventSource"}, nil},
		{"/static/index.html", 404, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := get(t, h, tt.path)
			b := body(t, r)
			if r.StatusCode != tt.code {
				t.Fatalf("got %d, want %d: %s", r.StatusCode, tt.code, b)
			}
			for _, w := range tt.want {
				if !strings.Contains(b, w) {
					t.Errorf("page lacks %q:\n%s", w, b)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(b, w) {
					t.Errorf("page has %q", w)
				}
			}
			if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy: got %q", csp)
			}
		})
	}
}

func TestHandler_token(t *testing.T) {
	h := ui.Handler(newFake(), ui.Options{Token: "t0ken"})
	if r := get(t, h, "/"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: got %d, want 401", r.StatusCode)
	}
	if r := get(t, h, "/", "Authorization", "Bearer wrong"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: got %d, want 401", r.StatusCode)
	}
	if r := get(t, h, "/", "Authorization", "Bearer t0ken"); r.StatusCode != 200 {
		t.Errorf("bearer token: got %d, want 200", r.StatusCode)
	}
	r := get(t, h, "/deploys/20250301-120000.000-aaaaaa?token=t0ken")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "../deploys/20250301-120000.000-aaaaaa" {
		t.Fatalf("?token=: got %d to %q, want 303 to the page without it", r.StatusCode, r.Header.Get("Location"))
	}
	c := r.Cookies()
	if len(c) != 1 || !c[0].HttpOnly {
		t.Fatalf("?token=: cookies %v, want one HttpOnly cookie", c)
	}
	if r := get(t, h, "/", "Cookie", c[0].String()); r.StatusCode != 200 {
		t.Errorf("cookie: got %d, want 200", r.StatusCode)
	}
}

// TestHandler_events checks the event stream of a running deploy: each line as a table row,
// a step and a status for "deploy status" lines, the offset as the event id, then the end.
func TestHandler_events(t *testing.T) {
	f := newFake()
	lines := make(chan string)
	f.follow = func(ctx context.Context, emit func([]byte, int64) error) (*state.Deploy, error) {
		var off int64
		for l := range lines {
			off += int64(len(l)) + 1
			if err := emit([]byte(l), off); err != nil {
				return nil, err
			}
		}
		return &state.Deploy{Status: state.StatusSucceeded}, nil
	}
	srv := httptest.NewServer(ui.Handler(f, ui.Options{KeepAlive: 50 * time.Millisecond}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/deploys/20250301-120500.000-bbbbbb/events?from=90")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type: got %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	next := func() string { // one event, comments (keep-alives) skipped
		t.Helper()
		var ev []string
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("read event: %v (so far %q)", err, ev)
			}
			l = strings.TrimSuffix(l, "\n")
			switch {
			case l == "" && len(ev) > 0:
				return strings.Join(ev, "|")
			case l == "" || strings.HasPrefix(l, ":"):
			default:
				ev = append(ev, l)
			}
		}
	}
	time.Sleep(120 * time.Millisecond) // a keep-alive or two go by first
	lines <- `{"level":"info","time":"2025-03-01T12:05:01.000Z","message":"script output","line":"step <1>"}`
	if got := next(); !strings.HasPrefix(got, "event: line|id: ") || !strings.Contains(got, "step &lt;1&gt;") {
		t.Errorf("line event: got %q", got)
	}
	lines <- `{"level":"info","time":"2025-03-01T12:05:02.000Z","message":"deploy status","status":"starting"}`
	for _, want := range []string{"event: step|data: <li><span class=\"step\">starting", "event: status|data: starting", "event: line"} {
		if got := next(); !strings.HasPrefix(got, want) {
			t.Errorf("got %q, want it to start with %q", got, want)
		}
	}
	close(lines)
	if got := next(); !strings.HasPrefix(got, `event: end|data: {`) || !strings.Contains(got, `"status":"succeeded"`) {
		t.Errorf("end event: got %q", got)
	}
	if _, err := rd.ReadString('\n'); err != io.EOF {
		t.Errorf("after end: got %v, want the stream closed", err)
	}
}

// fleetFake is the fake with a fleet, as the agent's backend is when etcd is configured.
type fleetFake struct {
	*fakeBackend
	fleet []ui.FleetApp
	err   error
}

func (f fleetFake) Fleet(context.Context) ([]ui.FleetApp, error) { return f.fleet, f.err }

func TestHandler_fleet(t *testing.T) {
	sha := strings.Repeat("1", 40)
	tests := []struct {
		name     string
		b        ui.Backend
		want     []string
		dontWant []string
	}{
		{"no fleet", newFake(), nil, []string{`id="fleet"`}},
		{"a fleet", fleetFake{fakeBackend: newFake(), fleet: []ui.FleetApp{{App: "web", Env: "production",
			Summary: "1 of 2 hosts on 111111111111, 1 unreachable", Lock: "alice at 12:00: freeze",
			Hosts: []ui.FleetHost{{Host: "web-1", Alive: true, SHA: sha, Mark: "good", State: "succeeded", Since: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)},
				{Host: "web-2", State: "unreachable"}}}}},
			[]string{`id="fleet"`, "1 of 2 hosts on 111111111111, 1 unreachable", "locked: alice at 12:00: freeze", "<td>web-1</td>",
				`<tr class="none"><td>web-2</td>`, "unreachable"}, nil},
		{"etcd down", fleetFake{fakeBackend: newFake(), err: errors.New("read fleet from etcd: context deadline exceeded")},
			[]string{`id="fleet"`, "fleet unavailable: read fleet from etcd", "acme/web"}, nil},
		{"nobody registered yet", fleetFake{fakeBackend: newFake()}, []string{"no host has registered in etcd yet"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := get(t, ui.Handler(tt.b, ui.Options{}), "/")
			b := body(t, r)
			if r.StatusCode != http.StatusOK {
				t.Fatalf("got %d: %s", r.StatusCode, b)
			}
			for _, w := range tt.want {
				if !strings.Contains(b, w) {
					t.Errorf("index lacks %q:\n%s", w, b)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(b, w) {
					t.Errorf("index has %q", w)
				}
			}
		})
	}
}
