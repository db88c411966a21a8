package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// AppStatus is what `pushdeploy status` shows for an app.
type AppStatus struct {
	App     string           `json:"app"`
	Repo    string           `json:"repo"`
	Current *release.Release `json:"current,omitempty"`
	Active  *state.Deploy    `json:"active,omitempty"` // under way
	Queued  *state.Deploy    `json:"queued,omitempty"` // waiting
	Last    *state.Deploy    `json:"last,omitempty"`   // the newest finished
	Config  *ConfigStatus    `json:"config,omitempty"` // with etcd: the configuration in place
	Agent   bool             `json:"agent_running"`    // false when read from disk
}

// Local answers the CLI's questions straight from the data directory; it is what the CLI
// uses when the agent is not running, and what the admin API itself serves.
type Local struct {
	cfg   *config.Config
	state *state.Store
	store *release.Store
	live  bool
	gc    func(app string) (release.GCResult, error)
}

// OpenLocal opens the agent's state read-only, for use while the agent is down.
func OpenLocal(cfg *config.Config) (*Local, error) {
	st, err := state.Open(cfg.Layout().StateDB(), true, cfg.HistoryLimit)
	if err != nil {
		return nil, err
	}
	l := &Local{cfg: cfg, state: st, store: release.NewStore(cfg.Layout())}
	l.gc = func(app string) (release.GCResult, error) {
		ac, ok := cfg.Apps[app]
		if !ok {
			return release.GCResult{}, fmt.Errorf("app %q: %w", app, state.ErrNotFound)
		}
		res, err := l.store.GC(app, ac.KeepReleases)
		if err == nil && len(res.Removed) > 0 {
			if c, cerr := release.OpenCache(l.store.CacheDir(app), ac.Origin()); cerr == nil {
				err = c.Forget(res.Removed...)
			}
		}
		return res, err
	}
	return l, nil
}

// Close releases the state file.
func (l *Local) Close() error { return l.state.Close() }

// Status reports every app, or just the one named.
func (l *Local) Status(_ context.Context, only string) ([]AppStatus, error) {
	var names []string
	for name := range l.cfg.Apps {
		if only == "" || only == name {
			names = append(names, name)
		}
	}
	if only != "" && len(names) == 0 {
		return nil, fmt.Errorf("app %q: %w", only, state.ErrNotFound)
	}
	sort.Strings(names)
	out := make([]AppStatus, 0, len(names))
	for _, name := range names {
		st := AppStatus{App: name, Repo: l.cfg.Apps[name].Repo, Agent: l.live}
		if sha, err := l.store.Current(name); err != nil {
			return nil, err
		} else if sha != "" {
			rels, err := l.store.List(name)
			if err != nil {
				return nil, err
			}
			for i := range rels {
				if rels[i].SHA == sha {
					st.Current = &rels[i]
				}
			}
		}
		st.Config = configStatus(l.cfg, name)
		hist, err := l.state.History(name, 50)
		if err != nil {
			return nil, err
		}
		for i := range hist {
			d := &hist[i]
			switch {
			case d.Status == state.StatusQueued && st.Queued == nil:
				st.Queued = d
			case !d.Status.Final() && d.Status != state.StatusQueued && st.Active == nil:
				st.Active = d
			case d.Status.Final() && st.Last == nil:
				st.Last = d
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// History returns an app's deploys, newest first.
func (l *Local) History(_ context.Context, app string, limit int) ([]state.Deploy, error) {
	if _, ok := l.cfg.Apps[app]; !ok {
		return nil, fmt.Errorf("app %q: %w", app, state.ErrNotFound)
	}
	return l.state.History(app, limit)
}

// Deploy returns one deploy and its log.
func (l *Local) Deploy(_ context.Context, app, id string) (*state.Deploy, []byte, error) {
	d, err := l.state.Get(app, id)
	if err != nil {
		return nil, nil, err
	}
	log, err := os.ReadFile(l.cfg.Layout().DeployLog(app, id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("read deploy log: %w", err)
	}
	return d, log, nil
}

// GC applies an app's release retention.
func (l *Local) GC(_ context.Context, app string) (release.GCResult, error) { return l.gc(app) }

func (a *Agent) adminHandler() http.Handler {
	l := &Local{cfg: a.cfg, state: a.state, store: a.store, live: true, gc: a.GC}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		res, err := l.Status(r.Context(), r.URL.Query().Get("app"))
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/apps/{app}/history", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		res, err := l.History(r.Context(), r.PathValue("app"), limit)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/apps/{app}/deploys/{id}", func(w http.ResponseWriter, r *http.Request) {
		d, log, err := l.Deploy(r.Context(), r.PathValue("app"), r.PathValue("id"))
		reply(w, deployWithLog{Deploy: d, Log: string(log)}, err)
	})
	mux.HandleFunc("POST /v1/apps/{app}/gc", func(w http.ResponseWriter, r *http.Request) {
		res, err := l.GC(r.Context(), r.PathValue("app"))
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/apps/{app}/restart", func(w http.ResponseWriter, r *http.Request) {
		d, err := a.Restart(r.PathValue("app"), r.URL.Query().Get("service"))
		reply(w, d, err)
	})
	mux.HandleFunc("POST /v1/apps/{app}/rollback", func(w http.ResponseWriter, r *http.Request) {
		d, err := a.Rollback(r.PathValue("app"), r.URL.Query().Get("sha"))
		reply(w, d, err)
	})
	return mux
}

type deployWithLog struct {
	Deploy *state.Deploy `json:"deploy"`
	Log    string        `json:"log"`
}

func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, ErrNothingToDo):
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
	case errors.Is(err, state.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

// ErrAgentDown means nothing answers on the admin socket.
var ErrAgentDown = errors.New("agent is not running")

// Client talks to a running agent over its admin socket.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the admin socket at path.
func NewClient(path string) *Client {
	return &Client{hc: &http.Client{
		Timeout: 5 * time.Minute,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

func (c *Client) call(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return ErrAgentDown
		}
		return fmt.Errorf("ask agent: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("ask agent: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s: %w", e.Error, state.ErrNotFound)
		}
		return fmt.Errorf("agent: %s", e.Error)
	}
	return json.Unmarshal(body, out)
}

// Status asks the agent for every app's status, or one app's.
func (c *Client) Status(ctx context.Context, app string) ([]AppStatus, error) {
	var out []AppStatus
	return out, c.call(ctx, http.MethodGet, "/v1/status?app="+url.QueryEscape(app), &out)
}

// History asks the agent for an app's deploys.
func (c *Client) History(ctx context.Context, app string, limit int) ([]state.Deploy, error) {
	var out []state.Deploy
	return out, c.call(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/history?limit="+strconv.Itoa(limit), &out)
}

// Deploy asks the agent for one deploy and its log.
func (c *Client) Deploy(ctx context.Context, app, id string) (*state.Deploy, []byte, error) {
	var out deployWithLog
	err := c.call(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/deploys/"+url.PathEscape(id), &out)
	return out.Deploy, []byte(out.Log), err
}

// GC asks the agent to apply an app's retention, between deploys.
func (c *Client) GC(ctx context.Context, app string) (release.GCResult, error) {
	var out release.GCResult
	return out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/gc", &out)
}

// Restart asks the agent to queue a rolling restart of app's current release (of one
// service when service is set) and returns the queued record; Deploy follows it.
func (c *Client) Restart(ctx context.Context, app, service string) (*state.Deploy, error) {
	var out state.Deploy
	return &out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/restart?service="+url.QueryEscape(service), &out)
}

// Rollback asks the agent to queue a rollback of app to sha (a prefix), or to the previous
// good release when sha is empty, and returns the queued record.
func (c *Client) Rollback(ctx context.Context, app, sha string) (*state.Deploy, error) {
	var out state.Deploy
	return &out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/rollback?sha="+url.QueryEscape(sha), &out)
}
