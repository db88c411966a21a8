package ansible

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeGitHub answers the repository webhook calls of GitHub Enterprise's REST API (under
// /api/v3, as `pushdeploy hooks ensure --api-url` calls it) for one repository, and checks
// them as GitHub would: the token, the API version header, paths, methods and bodies
// (name, events, config, and the app's secret). It answers GitHub's error shapes.
type fakeGitHub struct {
	t                     testing.TB
	token, repo, secret   string
	srv                   *httptest.Server
	mu                    sync.Mutex
	hooks                 []fakeHook
	nextID                int64
	creates, edits, lists int
}

type fakeHook struct {
	ID     int64    `json:"id"`
	Name   string   `json:"name"`
	Active bool     `json:"active"`
	Events []string `json:"events"`
	Config struct {
		URL         string `json:"url"`
		ContentType string `json:"content_type"`
		InsecureSSL string `json:"insecure_ssl"`
		Secret      string `json:"secret,omitempty"`
	} `json:"config"`
}

// newFakeGitHub serves on ln (in the lab, so the hosts reach it) until the test ends.
func newFakeGitHub(t testing.TB, ln net.Listener, token, repo, secret string) *fakeGitHub {
	f := &fakeGitHub{t: t, token: token, repo: repo, secret: secret, nextID: 4000}
	f.srv = serveOn(t, ln, f)
	return f
}

// serveOn serves h on ln (a listener in the lab, where the hosts reach it) until the test
// ends.
func serveOn(t testing.TB, ln net.Listener, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// URL is what `--api-url` takes.
func (f *fakeGitHub) URL() string { return "http://" + f.srv.Listener.Addr().String() }

func ghError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"message": msg, "documentation_url": "https://docs.github.com/rest"})
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		ghError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if got := r.Header.Get("X-GitHub-Api-Version"); got != "2022-11-28" {
		f.t.Errorf("%s %s: X-GitHub-Api-Version %q, want 2022-11-28", r.Method, r.URL.Path, got)
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v3/repos/"+f.repo+"/hooks")
	if !ok {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	switch {
	case rest == "" && r.Method == http.MethodGet:
		f.lists++
		per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
		if per != 100 {
			f.t.Errorf("GET %s: per_page %q, want 100 (the most GitHub gives)", r.URL, r.URL.Query().Get("per_page"))
		}
		json.NewEncoder(w).Encode(f.shown())
	case rest == "" && r.Method == http.MethodPost:
		h, ok := f.decode(w, r, true)
		if !ok {
			return
		}
		for _, o := range f.hooks {
			if o.Config.URL == h.Config.URL {
				ghError(w, http.StatusUnprocessableEntity, "Validation Failed: Hook already exists on this repository")
				return
			}
		}
		f.creates++
		f.nextID++
		h.ID = f.nextID
		f.hooks = append(f.hooks, h)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(f.shown()[len(f.hooks)-1])
	case r.Method == http.MethodPatch:
		id, _ := strconv.ParseInt(strings.TrimPrefix(rest, "/"), 10, 64)
		i := slices.IndexFunc(f.hooks, func(h fakeHook) bool { return h.ID == id })
		if i < 0 {
			ghError(w, http.StatusNotFound, "Not Found")
			return
		}
		h, ok := f.decode(w, r, false)
		if !ok {
			return
		}
		f.edits++
		h.ID, h.Name = id, f.hooks[i].Name
		f.hooks[i] = h
		json.NewEncoder(w).Encode(f.shown()[i])
	default:
		ghError(w, http.StatusNotFound, "Not Found")
	}
}

// decode reads a create or edit body and checks it as GitHub documents it, with the
// app's secret; a wrong one is answered 422.
func (f *fakeGitHub) decode(w http.ResponseWriter, r *http.Request, create bool) (fakeHook, bool) {
	var h fakeHook
	var problems []string
	if err := json.NewDecoder(r.Body).Decode(&h); err != nil {
		problems = append(problems, "body: "+err.Error())
	}
	if create && h.Name != "web" {
		problems = append(problems, fmt.Sprintf("name %q, want web", h.Name))
	}
	if !h.Active || !slices.Contains(h.Events, "push") {
		problems = append(problems, fmt.Sprintf("active %v, events %v: want an active hook with push", h.Active, h.Events))
	}
	if c := h.Config; !strings.HasPrefix(c.URL, "http") || c.ContentType != "json" || (c.InsecureSSL != "0" && c.InsecureSSL != "1") {
		problems = append(problems, fmt.Sprintf("config %+v: want an http(s) url, content_type json, insecure_ssl \"0\" or \"1\"", c))
	}
	if h.Config.Secret != f.secret {
		problems = append(problems, "config.secret is not the app's webhook secret")
	}
	if len(problems) > 0 {
		f.t.Errorf("%s %s: %s", r.Method, r.URL.Path, strings.Join(problems, "; "))
		ghError(w, http.StatusUnprocessableEntity, "Invalid request: "+strings.Join(problems, "; "))
		return h, false
	}
	h.Config.Secret = ""
	return h, true
}

// shown is the hooks as GitHub shows them: the secret masked.
func (f *fakeGitHub) shown() []fakeHook {
	out := slices.Clone(f.hooks)
	for i := range out {
		out[i].Config.Secret = "********"
	}
	return out
}

// hookURLs returns the URL of every hook, one entry per hook.
func (f *fakeGitHub) hookURLs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var urls []string
	for _, h := range f.hooks {
		urls = append(urls, h.Config.URL)
	}
	slices.Sort(urls)
	return urls
}

// counts returns how many hooks were created and edited so far.
func (f *fakeGitHub) counts() (creates, edits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.creates, f.edits
}
