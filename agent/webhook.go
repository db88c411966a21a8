package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/state"
)

// answer is the JSON body of every webhook response: it always says why.
type answer struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	Deploy string `json:"deploy,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (a *Agent) webHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/webhook/{app}", a.handleWebhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": a.Version})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, answer{Status: "error", Error: "no such endpoint: webhooks go to POST /webhook/{app}"})
	})
	return cleanPaths(mux)
}

// cleanPaths refuses a path that is not clean (`//webhook/app`, `/webhook/./app`,
// `/webhook/app/..`) with a 400 that says so. http.ServeMux would answer those with a
// redirect to the clean path and no JSON, and a webhook sender does not follow redirects:
// every answer of this listener is a status that means what it says, with a reason.
func cleanPaths(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "" || p[0] != '/' || path.Clean(p) != p {
			writeJSON(w, http.StatusBadRequest, answer{Status: "error",
				Error: fmt.Sprintf("path %q: not a clean path; webhooks go to POST /webhook/{app}", p)})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *Agent) handleWebhook(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("app")
	code, ans := a.webhook(r, name)
	log := a.log.With().Str("app", name).Str("delivery", r.Header.Get("X-GitHub-Delivery")).
		Str("event", r.Header.Get("X-GitHub-Event")).Int("code", code).Str("status", ans.Status).Logger()
	switch {
	case code >= 400:
		log.Warn().Str("error", ans.Error).Str("remote", r.RemoteAddr).Msg("webhook refused")
	default:
		log.Info().Str("reason", ans.Reason).Str("deploy", ans.Deploy).Msg("webhook answered")
	}
	label := name
	if _, ok := a.apps[name]; !ok {
		label = "" // never let unauthenticated callers create metric series
	}
	a.metrics.webhooks.WithLabelValues(label, strconv.Itoa(code), ans.Status).Inc()
	switch code {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, ans)
}

// webhook decides what to do with one delivery. The signature is checked before anything
// in the body is parsed; only then does the payload decide.
func (a *Agent) webhook(r *http.Request, name string) (int, answer) {
	refuse := func(code int, format string, args ...any) (int, answer) {
		return code, answer{Status: "error", Error: fmt.Sprintf(format, args...)}
	}
	if r.Method != http.MethodPost {
		return refuse(http.StatusMethodNotAllowed, "method %s not allowed: webhooks are POSTed", r.Method)
	}
	ap, ok := a.apps[name]
	if !ok {
		return refuse(http.StatusNotFound, "unknown app %q", name)
	}
	delivery, err := hooks.Read(r, ap.cfg.Secret(), hooks.Options{AllowSHA1: ap.cfg.AllowSHA1, Budget: a.budget})
	if err != nil {
		var he *hooks.Error
		if errors.As(err, &he) {
			return refuse(he.Status, "%s", he.Msg)
		}
		return refuse(http.StatusBadRequest, "read delivery: %v", err)
	}
	switch delivery.Event {
	case "push":
	case "ping":
		return http.StatusOK, answer{Status: "ignored", Reason: "ping: webhook is set up"}
	default:
		return http.StatusOK, answer{Status: "ignored", Reason: fmt.Sprintf("event %q is not deployed (only push)", delivery.Event)}
	}
	push, err := hooks.ParsePush(delivery.Payload)
	if err != nil {
		var he *hooks.Error
		if errors.As(err, &he) {
			return refuse(he.Status, "%s", he.Msg)
		}
		return refuse(http.StatusBadRequest, "parse push: %v", err)
	}
	if !strings.EqualFold(push.Repo, ap.cfg.Repo) {
		return refuse(http.StatusUnprocessableEntity, "repository.full_name: got %q, app %s deploys %q", push.Repo, name, ap.cfg.Repo)
	}
	if reason := a.ignore(ap, push); reason != "" {
		fresh, err := a.state.Accept(name, delivery.ID, nil)
		if err != nil {
			return refuse(http.StatusInternalServerError, "%v", err)
		}
		if !fresh {
			return duplicate(delivery.ID)
		}
		return http.StatusOK, answer{Status: "ignored", Reason: reason}
	}
	now := time.Now().UTC()
	d := &state.Deploy{
		ID:       a.ids.Next(now),
		App:      name,
		Kind:     state.KindDeploy,
		SHA:      push.After,
		Branch:   push.Branch,
		Delivery: delivery.ID,
		Pusher:   push.Pusher,
		Message:  push.HeadMessage,
		Status:   state.StatusQueued,
		Queued:   now,
	}
	fresh, err := a.state.Accept(name, delivery.ID, d)
	if err != nil {
		return refuse(http.StatusInternalServerError, "%v", err)
	}
	if !fresh {
		return duplicate(delivery.ID)
	}
	a.enqueue(ap, d)
	return http.StatusAccepted, answer{Status: "queued", Deploy: d.ID}
}

// duplicate answers a delivery already answered: GitHub redelivers with the same id.
func duplicate(id string) (int, answer) {
	return http.StatusOK, answer{Status: "duplicate", Reason: "delivery " + id + " was already answered"}
}

// ignore says why a push is not for this host, or "" when it must be deployed.
func (a *Agent) ignore(ap *app, p *hooks.Push) string {
	switch {
	case p.Tag != "":
		return fmt.Sprintf("tag %s: only branches are deployed", p.Tag)
	case p.Branch == "":
		return fmt.Sprintf("ref %s is not a branch", p.Ref)
	case p.Deleted:
		return fmt.Sprintf("branch %s was deleted", p.Branch)
	case !ap.cfg.Deploys(a.cfg.Environments, p.Branch):
		return fmt.Sprintf("branch %s is not deployed on host %s (it deploys %s)", p.Branch, a.cfg.Host,
			strings.Join(ap.cfg.Branches(a.cfg.Environments), ", "))
	}
	return ""
}

// writeJSON answers v as JSON. A refusal (4xx) also closes the connection: after a body
// that was cut short, or one whose Content-Length lied, what follows on the connection is
// not a request boundary, and net/http would answer it with a plain-text 400 of its own.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if code >= 400 {
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// httpErrorLog sends what net/http logs about connections (TLS handshakes that fail, a
// client that sends HTTP to the HTTPS listener) to the agent's log at debug level: the
// internet's scanners would otherwise fill the journal, unprioritised, on stderr.
func httpErrorLog(log zerolog.Logger) *stdlog.Logger {
	return stdlog.New(httpLogWriter{log.With().Str("component", "http").Logger()}, "", 0)
}

type httpLogWriter struct{ log zerolog.Logger }

func (w httpLogWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
