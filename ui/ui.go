package ui

import (
	"context"
	"crypto/subtle"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// Backend is what the status page needs from the agent.
type Backend interface {
	// Apps reports every app, sorted by name; it is asked at every load of the index, so it
	// must be cheap (one state read per instance, no health probe).
	Apps(ctx context.Context) ([]App, error)
	// History returns an app's deploys, newest first, at most limit (0: all kept); an
	// unknown app is an error wrapping state.ErrNotFound.
	History(ctx context.Context, app string, limit int) ([]state.Deploy, error)
	// Deploy finds a deploy by id, whichever app it belongs to, with its log so far (JSON
	// lines); an unknown id is an error wrapping state.ErrNotFound.
	Deploy(ctx context.Context, id string) (*state.Deploy, []byte, error)
	// Follow emits the deploy's log lines from byte offset from on, as they are written,
	// until the deploy is final and its log complete, and returns its final record.
	Follow(ctx context.Context, app, id string, from int64, emit func(line []byte, next int64) error) (*state.Deploy, error)
}

// FleetBackend is what a backend with a fleet (etcd configured) also provides: the index
// then shows every host of each environment and what it runs. A backend without one is
// simply not asked.
type FleetBackend interface {
	// Fleet reports each app of each environment across its hosts, sorted; it is one read
	// of etcd per load of the index.
	Fleet(ctx context.Context) ([]FleetApp, error)
}

// FleetApp is one app in one environment across its hosts.
type FleetApp struct {
	App, Env string
	// Summary is the status line: "converged on abc1234 (5 hosts)", or "3 of 5 hosts on
	// abc1234, 1 deploying, 1 unreachable".
	Summary   string
	Converged bool
	Hosts     []FleetHost
	// Lock and Halt say why hosts wait or gave up, "" when nothing does.
	Lock, Halt string
}

// FleetHost is one host's line.
type FleetHost struct {
	Host  string
	Alive bool
	SHA   string
	Mark  string
	State string // unreachable, a deploy's step, or the last deploy's outcome
	Since time.Time
}

// App is what the index shows of an app.
type App struct {
	Name    string
	Repo    string
	Current *release.Release // nil before the first deploy
	Since   time.Time        // when Current became current
	Active  *state.Deploy    // under way
	Queued  *state.Deploy    // waiting
	// Services are the current release's services and their instances; Error says why
	// they could not be read (the service manager is unreachable…).
	Services []Service
	Error    string
}

// Service is one service of an app's current release.
type Service struct {
	Name      string
	Instances []Instance
}

// Instance is one instance of a service, as its service manager and the last health check
// of it see it.
type Instance struct {
	Unit     string
	State    string    // ActiveState ("active", "failed", …)
	SubState string    // "running", "exited", …
	Since    time.Time // when it last became active
	Error    string    // why its state could not be read
	Health   *Verdict  // the last health answer seen, nil when none since the agent started
}

// Verdict is a health check's last answer on an instance, from the rollout that ran it.
type Verdict struct {
	Verdict string        // healthy, unhealthy, settled (no check: it stayed up)
	Checks  int           // how many checks it took
	Took    time.Duration // from the start of the checks to the verdict
	At      time.Time
	Release string // the release it was checked on (its sha, perhaps abbreviated)
}

// Options are the status page's settings.
type Options struct {
	Token string // when set, every request must carry it
	Log   zerolog.Logger
	// IndexHistory is how many deploys of each app the index lists (default 20).
	IndexHistory int
	// KeepAlive overrides DefaultKeepAlive.
	KeepAlive time.Duration
	// Now is the clock for "5m ago"; nil is time.Now.
	Now func() time.Time
}

//go:embed assets
var assets embed.FS

var pages = template.Must(template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html"))

// server serves the pages of one Backend.
type server struct {
	b    Backend
	opts Options
}

// Handler serves the status page from b.
func Handler(b Backend, opts Options) http.Handler {
	if opts.IndexHistory <= 0 {
		opts.IndexHistory = 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &server{b: b, opts: opts}
	static, _ := fs.Sub(assets, "assets")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /apps/{app}", s.app)
	mux.HandleFunc("GET /deploys/{id}", s.deploy)
	mux.HandleFunc("GET /deploys/{id}/events", s.events)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticOnly(http.FileServerFS(static))))
	return s.guard(mux)
}

// staticOnly serves the style sheet and the script, not the templates.
func staticOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "style.css", "follow.js":
			w.Header().Set("Cache-Control", "max-age=300")
			h.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

const tokenCookie = "pushdeploy_ui"

// guard sets the headers every answer carries and, with a token, refuses requests without it.
// A request with ?token= gets it as a cookie and is sent to the same page without it.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if s.opts.Token == "" {
			next.ServeHTTP(w, r)
			return
		}
		if q := r.URL.Query().Get("token"); q != "" && s.tokenOK(q) {
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: q, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			u := *r.URL
			v := u.Query()
			v.Del("token")
			u.RawQuery = v.Encode()
			// Relative, so that it works behind a proxy that adds a prefix (http.Redirect
			// would make it absolute).
			h.Set("Location", relative(r.URL.Path)+u.RequestURI()[1:])
			w.WriteHeader(http.StatusSeeOther)
			return
		}
		tok := ""
		if c, err := r.Cookie(tokenCookie); err == nil {
			tok = c.Value
		}
		if a := r.Header.Get("Authorization"); len(a) > 7 && a[:7] == "Bearer " {
			tok = a[7:]
		}
		if !s.tokenOK(tok) {
			h.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte("pushdeploy status page: a token is required: open this page with ?token=<ui.token_file's token>, or send Authorization: Bearer <token>\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *server) tokenOK(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
}

// relative is the way from the page at path back to the root, so that every link works
// behind a reverse proxy that serves the page under a prefix: "./" for /, "../" for
// /deploys/x.
func relative(path string) string {
	up := ""
	for _, c := range path[1:] {
		if c == '/' {
			up += "../"
		}
	}
	if up == "" {
		return "./"
	}
	return up
}

// pathEscape is url.PathEscape for templates.
func pathEscape(s string) string { return url.PathEscape(s) }
