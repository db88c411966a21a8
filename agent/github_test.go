package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
	"github.com/pushdeploy/pushdeploy/state"
)

const ghTestToken = "ghp_deploytoken"

// fakeDeployments behaves like GitHub Enterprise's REST API (mounted under /api/v3) for
// deployments and deployment statuses of acme/web.
type fakeDeployments struct {
	t *testing.T

	mu          sync.Mutex
	deployments []map[string]any           // request bodies, in order; id = 1 + index
	statuses    map[int64][]map[string]any // deployment id → status bodies, in order
	down        int                        // answer 502 when set
}

func newFakeDeployments(t *testing.T) (*fakeDeployments, *httptest.Server) {
	f := &fakeDeployments{t: t, statuses: map[int64][]map[string]any{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeDeployments) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down != 0 {
		w.WriteHeader(f.down)
		fmt.Fprint(w, "<html>Bad gateway</html>")
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+ghTestToken {
		w.WriteHeader(401)
		fmt.Fprint(w, `{"message":"Bad credentials","status":"401"}`)
		return
	}
	if got := r.Header.Get("X-GitHub-Api-Version"); got != "2022-11-28" {
		f.t.Errorf("%s %s: X-GitHub-Api-Version %q", r.Method, r.URL.Path, got)
	}
	var body map[string]any
	if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&body) != nil {
		f.t.Errorf("%s %s: want a POST with a JSON body", r.Method, r.URL.Path)
		w.WriteHeader(400)
		return
	}
	path := r.URL.Path
	switch {
	case path == "/api/v3/repos/acme/web/deployments":
		f.deployments = append(f.deployments, body)
		id := len(f.deployments)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%d,"sha":%q,"ref":%q,"environment":%q}`, id, body["ref"], body["ref"], body["environment"])
	case strings.HasPrefix(path, "/api/v3/repos/acme/web/deployments/") && strings.HasSuffix(path, "/statuses"):
		id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(path, "/api/v3/repos/acme/web/deployments/"), "/statuses"), 10, 64)
		if err != nil || id < 1 || int(id) > len(f.deployments) {
			w.WriteHeader(404)
			fmt.Fprint(w, `{"message":"Not Found"}`)
			return
		}
		f.statuses[id] = append(f.statuses[id], body)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%d,"state":%q}`, 100+len(f.statuses[id]), body["state"])
	default:
		w.WriteHeader(404)
		fmt.Fprint(w, `{"message":"Not Found"}`)
	}
}

// deploymentOf returns the GitHub deployment id created for pushdeploy deploy id, or 0.
func (f *fakeDeployments) deploymentOf(id string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range f.deployments {
		if desc, _ := d["description"].(string); strings.Contains(desc, id+" ") {
			return int64(i + 1)
		}
	}
	return 0
}

// waitStates waits until deployment id has n statuses and returns them.
func (f *fakeDeployments) waitStates(id int64, n int) []map[string]any {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		got := f.statuses[id]
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("deployment %d: fewer than %d statuses in time", id, n)
	return nil
}

// newGitHubFixture runs an agent reporting app web to the fake, with tiny backoffs; its
// reporter logs go to the returned buffer.
func newGitHubFixture(t *testing.T, srv *httptest.Server, edit func(*config.Config)) (*fixture, *syncbuf.Buffer) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "gh.token")
	if err := os.WriteFile(tokenFile, []byte(ghTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	f := newTunedFixture(t, func(c *config.Config) {
		c.Apps["web"].GitHub = &config.GitHub{TokenFile: tokenFile, APIURL: srv.URL, PublicURL: "https://deploy.example.com/"}
		if edit != nil {
			edit(c)
		}
	}, func(a *Agent) {
		r := a.reports
		r.Backoff, r.MaxBackoff, r.CallTimeout = time.Millisecond, 4*time.Millisecond, 2*time.Second
		r.log = zerolog.New(zerolog.MultiLevelWriter(logs, zerolog.NewTestWriter(t))).With().Str("component", "github").Logger()
	})
	return f, logs
}

func TestAgent_githubSuccess(t *testing.T) {
	gh, srv := newFakeDeployments(t)
	f, _ := newGitHubFixture(t, srv, nil)
	sha := f.commit("1")
	f.push("deploy-production")
	d := f.wait(f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), sha).Deploy)
	if d.Status != state.StatusSucceeded {
		t.Fatalf("got %s (%s), want succeeded", d.Status, d.Error)
	}
	f.stop() // drains the reports
	id := gh.deploymentOf(d.ID)
	if id == 0 {
		t.Fatalf("no GitHub deployment for %s: %v", d.ID, gh.deployments)
	}
	body := gh.deployments[id-1]
	want := map[string]any{
		"ref": sha, "environment": "production", "auto_merge": false, "required_contexts": []any{},
		"production_environment": true, "transient_environment": false,
		"description": "pushdeploy " + d.ID + " on test-host",
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("deployment body:\ngot  %v\nwant %v", body, want)
	}
	st := gh.waitStates(id, 3)
	logURL := "https://deploy.example.com/deploys/" + d.ID
	for i, state := range []string{"queued", "in_progress", "success"} {
		if st[i]["state"] != state || st[i]["log_url"] != logURL || st[i]["environment"] != "production" {
			t.Errorf("status %d: got %v, want %s with log_url %s and environment production", i, st[i], state, logURL)
		}
	}
	if len(st) != 3 {
		t.Errorf("got %d statuses, want 3", len(st))
	}
}

func TestAgent_githubFailure(t *testing.T) {
	gh, srv := newFakeDeployments(t)
	script := writeScript(t, "echo nope >&2; exit 3")
	f, _ := newGitHubFixture(t, srv, func(c *config.Config) {
		c.Apps["web"].Script = config.Argv{script}
		c.Apps["web"].GitHub.EnvironmentPerHost = true
		c.Apps["web"].GitHub.PublicURL = ""
	})
	sha := f.commit("1")
	f.push("deploy-production")
	d := f.wait(f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), sha).Deploy)
	if d.Status != state.StatusFailed {
		t.Fatalf("got %s, want failed", d.Status)
	}
	id := gh.deploymentOf(d.ID)
	if id == 0 {
		t.Fatalf("no GitHub deployment for %s", d.ID)
	}
	st := gh.waitStates(id, 3)[1:] // after queued
	gh.mu.Lock()
	env := gh.deployments[id-1]["environment"]
	gh.mu.Unlock()
	if env != "production/test-host" {
		t.Errorf("environment: got %v, want production/test-host", env)
	}
	reason, _, _ := strings.Cut(d.Error, "\n")
	if st[1]["state"] != "failure" || st[1]["description"] != reason || st[1]["environment"] != "production/test-host" {
		t.Errorf("final status: got %v, want failure %q", st[1], reason)
	}
	if _, ok := st[1]["log_url"]; ok {
		t.Errorf("log_url sent without public_url: %v", st[1])
	}
	if desc, _ := st[1]["description"].(string); len([]rune(desc)) > 140 {
		t.Errorf("description longer than 140 characters: %q", desc)
	}
}

func TestAgent_githubSuperseded(t *testing.T) {
	gh, srv := newFakeDeployments(t)
	g := newGate(t)
	script := writeScript(t, g.script())
	f, _ := newGitHubFixture(t, srv, func(c *config.Config) { c.Apps["web"].Script = config.Argv{script} })
	var shas, ids []string
	for _, v := range []string{"1", "2", "3"} {
		shas = append(shas, f.commit(v))
		f.push("deploy-production")
		r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), shas[len(shas)-1])
		ids = append(ids, r.Deploy)
		if v == "1" {
			f.waitStatus(ids[0], state.StatusScript)
		}
	}
	g.open(t)
	second, third := f.wait(ids[1]), f.wait(ids[2])
	f.wait(ids[0])
	if second.Status != state.StatusSuperseded || third.Status != state.StatusSucceeded {
		t.Fatalf("got %s and %s, want superseded and succeeded", second.Status, third.Status)
	}
	f.stop()
	// Superseded before it started: its deployment, created when the push was queued, goes
	// inactive and says by which deploy.
	id := gh.deploymentOf(ids[1])
	if id == 0 {
		t.Fatalf("superseded deploy %s got no GitHub deployment", ids[1])
	}
	if st := gh.waitStates(id, 2); st[0]["state"] != "queued" || st[1]["state"] != "inactive" || !strings.Contains(fmt.Sprint(st[1]["description"]), ids[2]) {
		t.Errorf("superseded: got %v, want queued then inactive naming %s", st, ids[2])
	}
	id = gh.deploymentOf(ids[2])
	if st := gh.waitStates(id, 3); st[0]["state"] != "queued" || st[1]["state"] != "in_progress" || st[2]["state"] != "success" {
		t.Errorf("newest: got %v, want queued, in_progress, success", st)
	}
}

func TestAgent_githubStale(t *testing.T) {
	gh, srv := newFakeDeployments(t)
	f, _ := newGitHubFixture(t, srv, nil)
	old := f.commit("1")
	f.push("deploy-production")
	f.wait(f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), old).Deploy)
	newer := f.commit("2")
	f.push("deploy-production")
	f.wait(f.deliver("refs/heads/deploy-production", old, newer).Deploy)
	late := f.wait(f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), old).Deploy)
	if late.Status != state.StatusStale {
		t.Fatalf("got %s, want stale", late.Status)
	}
	st := gh.waitStates(gh.deploymentOf(late.ID), 3)
	if st[2]["state"] != "inactive" || !strings.Contains(st[2]["description"].(string), "moved on") {
		t.Errorf("stale deploy: got %v, want inactive saying the branch moved on", st[2])
	}
}

func TestAgent_githubDown(t *testing.T) {
	for _, mode := range []string{"502", "closed"} {
		t.Run(mode, func(t *testing.T) {
			gh, srv := newFakeDeployments(t)
			f, logs := newGitHubFixture(t, srv, nil)
			if mode == "502" {
				gh.mu.Lock()
				gh.down = http.StatusBadGateway
				gh.mu.Unlock()
			} else {
				srv.Close()
			}
			sha := f.commit("1")
			f.push("deploy-production")
			start := time.Now()
			d := f.wait(f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), sha).Deploy)
			if d.Status != state.StatusSucceeded {
				t.Fatalf("got %s (%s), want succeeded", d.Status, d.Error)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("deploy took %s with GitHub down", took)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(logs.String(), "github deployment dropped") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if out := logs.String(); !strings.Contains(out, `"level":"warn"`) || !strings.Contains(out, "github deployment dropped") {
				t.Errorf("no warning about the dropped deployment:\n%s", out)
			}
			if strings.Contains(logs.String(), ghTestToken) {
				t.Error("the token appears in the logs")
			}
		})
	}
}

// countingAPI fails every call and counts them.
type countingAPI struct {
	mu    sync.Mutex
	calls int
}

func (c *countingAPI) CreateDeployment(context.Context, string, hooks.DeploymentSpec) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return 0, errors.New("502 Bad Gateway")
}

func (c *countingAPI) CreateDeploymentStatus(context.Context, string, int64, hooks.DeploymentStatus) error {
	return errors.New("unexpected status without a deployment")
}

func TestReporter_boundsAndDrops(t *testing.T) {
	logs := &syncbuf.Buffer{}
	r := newReporter(zerolog.New(logs), 1)
	r.Backoff, r.MaxBackoff = time.Millisecond, 2*time.Millisecond
	api := &countingAPI{}
	spec := &hooks.DeploymentSpec{Ref: "abc", Environment: "production"}
	r.send(ghReport{api: api, repo: "acme/web", deploy: "d1", create: spec})
	r.send(ghReport{api: api, repo: "acme/web", deploy: "d2", create: spec}) // queue full
	done := make(chan struct{})
	go func() { defer close(done); r.run(context.Background()) }()
	r.close()
	<-done
	r.send(ghReport{api: api, repo: "acme/web", deploy: "d3", create: spec}) // closed
	if api.calls != DefaultGitHubAttempts {
		t.Errorf("got %d calls, want %d attempts for d1 only", api.calls, DefaultGitHubAttempts)
	}
	out := logs.String()
	for _, want := range []string{`"deploy":"d2","state":"","message":"github report dropped: queue full"`,
		`"deploy":"d1","repo":"acme/web","error":"502 Bad Gateway","until":"GitHub answers: further reports dropped are logged at debug level","message":"github deployment dropped"`,
		`"deploy":"d3","state":"","message":"github report dropped: agent stopping"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}
