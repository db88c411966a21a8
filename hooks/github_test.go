package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v92/github"
)

const fakeToken = "ghp_testtoken"

// fakeGitHub behaves like GitHub's REST API for repository webhooks of o/r: it checks the
// token, the API version header, methods, paths and bodies, paginates with Link headers and
// answers with GitHub's error shapes.
type fakeGitHub struct {
	t      *testing.T
	prefix string // "" for api.github.com, "/api/v3" for Enterprise

	mu     sync.Mutex
	hooks  []map[string]any // as GitHub shows them
	nextID int64
	calls  []string // "METHOD path?query"
	bodies []map[string]any
	pinged []int64
	fail   func(w http.ResponseWriter, r *http.Request) bool // answers instead when true
}

func newFakeGitHub(t *testing.T, prefix string, n int) (*fakeGitHub, *httptest.Server) {
	f := &fakeGitHub{t: t, prefix: prefix, nextID: 1000}
	for i := range n {
		f.addHook(fmt.Sprintf("https://other%d.example.com/webhook", i), true, []string{"push"}, "json", "0")
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeGitHub) addHook(url string, active bool, events []string, ct, insecure string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.hooks = append(f.hooks, map[string]any{
		"type": "Repository", "id": f.nextID, "name": "web", "active": active, "events": events,
		"config": map[string]any{"url": url, "content_type": ct, "insecure_ssl": insecure, "secret": "********"},
	})
	return f.nextID
}

func ghError(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprint(w, body)
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.RequestURI())
	if f.fail != nil && f.fail(w, r) {
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+fakeToken {
		ghError(w, 401, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`)
		return
	}
	if got := r.Header.Get("X-GitHub-Api-Version"); got != "2022-11-28" {
		f.t.Errorf("%s %s: X-GitHub-Api-Version %q, want 2022-11-28", r.Method, r.URL.Path, got)
	}
	path, ok := strings.CutPrefix(r.URL.Path, f.prefix+"/repos/o/r/hooks")
	if !ok {
		ghError(w, 404, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`)
		return
	}
	var body map[string]any
	if (r.Method == http.MethodPost || r.Method == http.MethodPatch) && !strings.HasSuffix(path, "/pings") {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.t.Errorf("%s %s: body: %v", r.Method, r.URL.Path, err)
		}
		f.bodies = append(f.bodies, body)
	}
	switch {
	case path == "" && r.Method == http.MethodGet:
		per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
		if per == 0 {
			per = 30
		}
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page == 0 {
			page = 1
		}
		last := (len(f.hooks) + per - 1) / per
		if last > 1 {
			link := func(p int, rel string) string {
				return fmt.Sprintf(`<http://%s%s/repositories/1/hooks?per_page=%d&page=%d>; rel="%s"`, r.Host, f.prefix, per, p, rel)
			}
			var links []string
			if page < last {
				links = append(links, link(page+1, "next"), link(last, "last"))
			}
			if page > 1 {
				links = append(links, link(1, "first"), link(page-1, "prev"))
			}
			w.Header().Set("Link", strings.Join(links, ", "))
		}
		from, to := min((page-1)*per, len(f.hooks)), min(page*per, len(f.hooks))
		json.NewEncoder(w).Encode(f.hooks[from:to])
	case path == "" && r.Method == http.MethodPost:
		if !f.checkHookBody(body, true) {
			ghError(w, 422, `{"message":"Invalid request."}`)
			return
		}
		cfg := body["config"].(map[string]any)
		for _, h := range f.hooks {
			if h["config"].(map[string]any)["url"] == cfg["url"] {
				ghError(w, 422, `{"message":"Validation Failed","errors":[{"resource":"Hook","code":"custom","message":"Hook already exists on this repository"}],"documentation_url":"https://docs.github.com/rest/repos/webhooks#create-a-repository-webhook","status":"422"}`)
				return
			}
		}
		f.nextID++
		h := map[string]any{"type": "Repository", "id": f.nextID, "name": "web", "active": body["active"], "events": body["events"],
			"config": map[string]any{"url": cfg["url"], "content_type": cfg["content_type"], "insecure_ssl": cfg["insecure_ssl"], "secret": "********"}}
		f.hooks = append(f.hooks, h)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(h)
	default:
		rest := strings.TrimPrefix(path, "/")
		idStr, action, _ := strings.Cut(rest, "/")
		id, _ := strconv.ParseInt(idStr, 10, 64)
		i := -1
		for j, h := range f.hooks {
			if h["id"] == id {
				i = j
			}
		}
		if i < 0 {
			ghError(w, 404, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`)
			return
		}
		switch {
		case action == "" && r.Method == http.MethodPatch:
			if !f.checkHookBody(body, false) {
				ghError(w, 422, `{"message":"Invalid request."}`)
				return
			}
			h := f.hooks[i]
			cfg := body["config"].(map[string]any)
			h["active"], h["events"] = body["active"], body["events"]
			h["config"] = map[string]any{"url": cfg["url"], "content_type": cfg["content_type"], "insecure_ssl": cfg["insecure_ssl"], "secret": "********"}
			json.NewEncoder(w).Encode(h)
		case action == "" && r.Method == http.MethodDelete:
			f.hooks = append(f.hooks[:i], f.hooks[i+1:]...)
			w.WriteHeader(http.StatusNoContent)
		case action == "pings" && r.Method == http.MethodPost:
			f.pinged = append(f.pinged, id)
			w.WriteHeader(http.StatusNoContent)
		default:
			ghError(w, 404, `{"message":"Not Found"}`)
		}
	}
}

// checkHookBody checks a create or edit body as GitHub documents it.
func (f *fakeGitHub) checkHookBody(body map[string]any, create bool) bool {
	f.t.Helper()
	ok := true
	bad := func(format string, args ...any) { f.t.Errorf(format, args...); ok = false }
	if create && body["name"] != "web" {
		bad("name %v, want web", body["name"])
	}
	if body["active"] != true {
		bad("active %v, want true", body["active"])
	}
	events, _ := body["events"].([]any)
	hasPush := false
	for _, e := range events {
		hasPush = hasPush || e == "push"
	}
	if !hasPush {
		bad("events %v, want push among them", body["events"])
	}
	cfg, _ := body["config"].(map[string]any)
	if cfg == nil {
		bad("no config")
		return false
	}
	if cfg["content_type"] != "json" {
		bad("config.content_type %v, want json", cfg["content_type"])
	}
	if s, _ := cfg["secret"].(string); s != "s3cret" {
		bad("config.secret %q, want s3cret", s)
	}
	if v := cfg["insecure_ssl"]; v != "0" && v != "1" {
		bad("config.insecure_ssl %v, want \"0\" or \"1\"", v)
	}
	if u, _ := cfg["url"].(string); u == "" {
		bad("config.url missing")
	}
	return ok
}

func testClient(t *testing.T, srv *httptest.Server) *GitHub {
	t.Helper()
	u := srv.URL + "/"
	g, err := newGitHub(fakeToken, github.WithURLs(&u, &u))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

const hookURL = "https://deploy.example.com/webhook/web"

var spec = HookSpec{URL: hookURL, Secret: "s3cret"}

func TestGitHub_EnsureCreates(t *testing.T) {
	for _, n := range []int{0, 1, 250} {
		t.Run(fmt.Sprintf("%d hooks", n), func(t *testing.T) {
			f, srv := newFakeGitHub(t, "", n)
			g := testClient(t, srv)
			res, err := g.Ensure(context.Background(), "o/r", spec, false)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != HookCreated || res.ID != int64(1000+n+1) {
				t.Errorf("got %+v, want created with id %d", res, 1000+n+1)
			}
			pages := max(1, (n+99)/100)
			if got := len(f.calls); got != pages+1 {
				t.Errorf("got %d calls %v, want %d list pages and a create", got, f.calls, pages)
			}
			b := f.bodies[0]
			if !reflect.DeepEqual(b["events"], []any{"push"}) {
				t.Errorf("events %v, want [push]", b["events"])
			}
			if cfg := b["config"].(map[string]any); cfg["url"] != hookURL || cfg["insecure_ssl"] != "0" {
				t.Errorf("config %v", cfg)
			}
			// Again: found, nothing to do.
			res, err = g.Ensure(context.Background(), "o/r", spec, false)
			if err != nil || res.Action != HookUnchanged || res.ID != int64(1000+n+1) {
				t.Errorf("second ensure: got %+v, %v, want unchanged", res, err)
			}
			if len(f.hooks) != n+1 {
				t.Errorf("got %d hooks, want %d", len(f.hooks), n+1)
			}
		})
	}
}

func TestGitHub_EnsureFindsOnPage3(t *testing.T) {
	f, srv := newFakeGitHub(t, "", 230)
	id := f.addHook(hookURL, true, []string{"push"}, "json", "0")
	f.addHook("https://z.example.com/", true, []string{"push"}, "json", "0")
	g := testClient(t, srv)
	res, err := g.Ensure(context.Background(), "o/r", spec, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != HookUnchanged || res.ID != id {
		t.Errorf("got %+v, want unchanged %d", res, id)
	}
	want := []string{
		"GET /repos/o/r/hooks?per_page=100",
		"GET /repos/o/r/hooks?page=2&per_page=100",
		"GET /repos/o/r/hooks?page=3&per_page=100",
	}
	if !reflect.DeepEqual(f.calls, want) {
		t.Errorf("got calls %v, want %v", f.calls, want)
	}
}

func TestGitHub_EnsureUpdates(t *testing.T) {
	cases := []struct {
		name       string
		active     bool
		events     []string
		ct, ssl    string
		rotate     bool
		wantEvents []any
	}{
		{"inactive", false, []string{"push"}, "json", "0", false, []any{"push"}},
		{"no push", true, []string{"issues"}, "json", "0", false, []any{"issues", "push"}},
		{"form", true, []string{"push"}, "form", "0", false, []any{"push"}},
		{"insecure", true, []string{"push", "create"}, "json", "1", false, []any{"push", "create"}},
		{"rotate", true, []string{"push"}, "json", "0", true, []any{"push"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeGitHub(t, "", 120)
			id := f.addHook(hookURL, tc.active, tc.events, tc.ct, tc.ssl)
			g := testClient(t, srv)
			res, err := g.Ensure(context.Background(), "o/r", spec, tc.rotate)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != HookUpdated || res.ID != id {
				t.Errorf("got %+v, want updated %d", res, id)
			}
			if last := f.calls[len(f.calls)-1]; last != fmt.Sprintf("PATCH /repos/o/r/hooks/%d", id) {
				t.Errorf("got last call %s, want PATCH of hook %d", last, id)
			}
			if got := f.bodies[0]["events"]; !reflect.DeepEqual(got, tc.wantEvents) {
				t.Errorf("got events %v, want %v", got, tc.wantEvents)
			}
			if len(f.hooks) != 121 {
				t.Errorf("got %d hooks, want 121 (no duplicate)", len(f.hooks))
			}
			res, err = g.Ensure(context.Background(), "o/r", spec, false)
			if err != nil || res.Action != HookUnchanged {
				t.Errorf("second ensure: got %+v, %v, want unchanged", res, err)
			}
		})
	}
}

func TestGitHub_EnsureInsecureSSL(t *testing.T) {
	f, srv := newFakeGitHub(t, "", 0)
	g := testClient(t, srv)
	s := spec
	s.InsecureSSL = true
	if _, err := g.Ensure(context.Background(), "o/r", s, false); err != nil {
		t.Fatal(err)
	}
	if got := f.bodies[0]["config"].(map[string]any)["insecure_ssl"]; got != "1" {
		t.Errorf("got insecure_ssl %v, want \"1\"", got)
	}
}

func TestGitHub_Enterprise(t *testing.T) {
	f, srv := newFakeGitHub(t, "/api/v3", 150)
	g, err := NewGitHub(fakeToken, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.Ensure(context.Background(), "o/r", spec, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != HookCreated {
		t.Errorf("got %+v, want created", res)
	}
	want := []string{
		"GET /api/v3/repos/o/r/hooks?per_page=100",
		"GET /api/v3/repos/o/r/hooks?page=2&per_page=100",
		"POST /api/v3/repos/o/r/hooks",
	}
	if !reflect.DeepEqual(f.calls, want) {
		t.Errorf("got calls %v, want %v", f.calls, want)
	}
}

func TestGitHub_Errors(t *testing.T) {
	reset := time.Now().Add(17 * time.Minute).Truncate(time.Second)
	cases := []struct {
		name     string
		token    string
		repo     string
		fail     func(w http.ResponseWriter, r *http.Request) bool
		want     error
		contains string
	}{
		{name: "bad token", token: "nope", repo: "o/r", want: ErrUnauthorized},
		{name: "no admin", token: fakeToken, repo: "o/private", want: ErrNoAccess, contains: "admin rights on repository hooks"},
		{name: "rate limit", token: fakeToken, repo: "o/r", want: ErrRateLimited,
			contains: "retry after " + reset.Local().Format(time.RFC3339),
			fail: func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("X-RateLimit-Limit", "5000")
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Used", "5000")
				w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
				w.Header().Set("X-RateLimit-Resource", "core")
				ghError(w, 403, `{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting","status":"403"}`)
				return true
			}},
		{name: "secondary rate limit", token: fakeToken, repo: "o/r", want: ErrRateLimited, contains: "retry after",
			fail: func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("Retry-After", "60")
				ghError(w, 403, `{"message":"You have exceeded a secondary rate limit.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api?apiVersion=2022-11-28#about-secondary-rate-limits"}`)
				return true
			}},
		{name: "hook exists", token: fakeToken, repo: "o/r", want: ErrHookExists,
			fail: func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPost {
					return false
				}
				ghError(w, 422, `{"message":"Validation Failed","errors":[{"resource":"Hook","code":"custom","message":"Hook already exists on this repository"}],"documentation_url":"https://docs.github.com/rest/repos/webhooks#create-a-repository-webhook","status":"422"}`)
				return true
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeGitHub(t, "", 0)
			f.fail = tc.fail
			u := srv.URL + "/"
			g, err := newGitHub(tc.token, github.WithURLs(&u, &u))
			if err != nil {
				t.Fatal(err)
			}
			_, err = g.Ensure(context.Background(), tc.repo, spec, false)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("got %q, want it to contain %q", err, tc.contains)
			}
		})
	}
}

func TestGitHub_ListRemovePing(t *testing.T) {
	f, srv := newFakeGitHub(t, "", 140)
	id := f.addHook(hookURL, true, []string{"push"}, "json", "1")
	g := testClient(t, srv)
	ctx := context.Background()
	list, err := g.List(ctx, "o/r")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 141 {
		t.Fatalf("got %d hooks, want 141", len(list))
	}
	want := HookInfo{ID: id, URL: hookURL, Active: true, Events: []string{"push"}, ContentType: "json", InsecureSSL: true}
	if !reflect.DeepEqual(list[140], want) {
		t.Errorf("got %+v, want %+v", list[140], want)
	}

	for _, arg := range []string{hookURL, strconv.FormatInt(id, 10)} {
		got, err := g.Ping(ctx, "o/r", arg)
		if err != nil || got != id {
			t.Errorf("ping %s: got %d, %v, want %d", arg, got, err, id)
		}
	}
	if !reflect.DeepEqual(f.pinged, []int64{id, id}) {
		t.Errorf("got pings %v, want %d twice", f.pinged, id)
	}

	if got, err := g.Remove(ctx, "o/r", hookURL); err != nil || got != id {
		t.Errorf("remove by URL: got %d, %v, want %d", got, err, id)
	}
	if _, err := g.Remove(ctx, "o/r", hookURL); !errors.Is(err, ErrHookNotFound) {
		t.Errorf("remove again by URL: got %v, want ErrHookNotFound", err)
	}
	other := list[3].ID
	if got, err := g.Remove(ctx, "o/r", strconv.FormatInt(other, 10)); err != nil || got != other {
		t.Errorf("remove by id: got %d, %v, want %d", got, err, other)
	}
	if _, err := g.Remove(ctx, "o/r", strconv.FormatInt(other, 10)); !errors.Is(err, ErrHookNotFound) {
		t.Errorf("remove again by id: got %v, want ErrHookNotFound", err)
	}
	if len(f.hooks) != 139 {
		t.Errorf("got %d hooks left, want 139", len(f.hooks))
	}
}
