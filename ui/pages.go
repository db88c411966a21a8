package ui

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/state"
)

var funcs = template.FuncMap{
	"short": func(sha string) string {
		if len(sha) > 12 {
			return sha[:12]
		}
		return sha
	},
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("15:04:05.000")
	},
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"took": func(d *state.Deploy) string {
		if d.Started.IsZero() || d.Finished.IsZero() {
			return ""
		}
		return d.Finished.Sub(d.Started).Round(time.Millisecond).String()
	},
	"firstLine": func(s string) string {
		line, _, _ := strings.Cut(s, "\n")
		return line
	},
	"kind": func(d *state.Deploy) string {
		if d.Kind == "" {
			return state.KindDeploy
		}
		return d.Kind
	},
	"final": func(d *state.Deploy) bool { return d.Status.Final() },
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"path": pathEscape,
}

// page is what every template gets.
type page struct {
	Title string
	Root  string // relative way to the root ("./", "../")
	Now   time.Time
	Data  any
}

func (s *server) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	var b bytes.Buffer
	p := page{Title: title, Root: relative(r.URL.Path), Now: s.opts.Now(), Data: data}
	if err := pages.ExecuteTemplate(&b, name, p); err != nil {
		s.fail(w, fmt.Errorf("render %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

// fail answers err: 404 for what does not exist, else 500 (logged: the page says little).
func (s *server) fail(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if errors.Is(err, state.ErrNotFound) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintln(w, err)
		return
	}
	s.opts.Log.Error().Err(err).Msg("status page")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintln(w, "internal error; the agent's log says more")
}

// indexData is what the index shows: this host's apps, and with a fleet every host's.
type indexData struct {
	Apps     []appHistory
	HasFleet bool
	Fleet    []FleetApp
	FleetErr string
}

// appHistory is an app and its newest deploys.
type appHistory struct {
	App
	History []state.Deploy
	More    bool // History is not all of it
}

func (s *server) index(w http.ResponseWriter, r *http.Request) {
	apps, err := s.b.Apps(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	out := make([]appHistory, len(apps))
	for i, a := range apps {
		h, err := s.b.History(r.Context(), a.Name, s.opts.IndexHistory+1)
		if err != nil {
			s.fail(w, err)
			return
		}
		out[i] = appHistory{App: a, History: h[:min(len(h), s.opts.IndexHistory)], More: len(h) > s.opts.IndexHistory}
	}
	idx := indexData{Apps: out}
	if fb, ok := s.b.(FleetBackend); ok {
		// etcd down leaves the host's own view usable: the fleet section says why it is empty.
		if idx.Fleet, err = fb.Fleet(r.Context()); err != nil {
			idx.FleetErr = err.Error()
		}
		idx.HasFleet = true
	}
	s.render(w, r, "index.html", "pushdeploy", idx)
}

func (s *server) app(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("app")
	apps, err := s.b.Apps(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	for _, a := range apps {
		if a.Name != name {
			continue
		}
		h, err := s.b.History(r.Context(), name, 0)
		if err != nil {
			s.fail(w, err)
			return
		}
		s.render(w, r, "app.html", name+" · pushdeploy", appHistory{App: a, History: h})
		return
	}
	s.fail(w, fmt.Errorf("app %q: %w", name, state.ErrNotFound))
}

// deployPage is a deploy, its steps and its log so far.
type deployPage struct {
	Deploy *state.Deploy
	Steps  []Step
	Lines  []Line
	Offset int64 // where the log read stopped: the event stream goes on from there
}

func (s *server) deploy(w http.ResponseWriter, r *http.Request) {
	d, log, err := s.b.Deploy(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	p := deployPage{Deploy: d}
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 2<<20)
	for sc.Scan() {
		p.Offset += int64(len(sc.Bytes())) + 1
		p.Lines = append(p.Lines, parseLine(sc.Bytes(), p.Offset))
	}
	p.Steps = steps(p.Lines)
	s.render(w, r, "deploy.html", d.App+" "+d.ID+" · pushdeploy", p)
}
