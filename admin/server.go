package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/pushdeploy/pushdeploy/state"
)

// Handler serves the admin API from b: JSON over HTTP, on the agent's unix socket (Listen).
func Handler(b Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		res, err := b.Status(r.Context(), r.URL.Query().Get("app"))
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/apps/{app}/history", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		res, err := b.History(r.Context(), r.PathValue("app"), limit)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/apps/{app}/deploys/{id}", func(w http.ResponseWriter, r *http.Request) {
		d, log, err := b.Deploy(r.Context(), r.PathValue("app"), r.PathValue("id"))
		reply(w, deployWithLog{Deploy: d, Log: string(log)}, err)
	})
	mux.HandleFunc("POST /v1/apps/{app}/gc", func(w http.ResponseWriter, r *http.Request) {
		res, err := b.GC(r.Context(), r.PathValue("app"))
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/apps/{app}/restart", func(w http.ResponseWriter, r *http.Request) {
		d, err := b.Restart(r.Context(), r.PathValue("app"), r.URL.Query().Get("service"))
		reply(w, d, err)
	})
	mux.HandleFunc("POST /v1/apps/{app}/rollback", func(w http.ResponseWriter, r *http.Request) {
		d, err := b.Rollback(r.Context(), r.PathValue("app"), r.URL.Query().Get("sha"))
		reply(w, d, err)
	})
	mux.HandleFunc("POST /v1/apps/{app}/deploy", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		d, err := b.DeployBranch(r.Context(), r.PathValue("app"), DeployRequest{Env: q.Get("env"), SHA: q.Get("sha"), User: q.Get("user")})
		reply(w, d, err)
	})
	mux.HandleFunc("GET /v1/apps/{app}/deploys/{id}/log", func(w http.ResponseWriter, r *http.Request) {
		streamLog(w, r, b)
	})
	return mux
}

// streamLog answers a deploy's log as JSON lines (LogEntry), each flushed as it is written,
// ending with the final record; an error before the first line is answered as any other.
func streamLog(w http.ResponseWriter, r *http.Request, b Backend) {
	from, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	started := false
	start := func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
		}
	}
	d, err := b.Follow(r.Context(), r.PathValue("app"), r.PathValue("id"), from, func(line []byte, next int64) error {
		start()
		if !json.Valid(line) {
			line, _ = json.Marshal(map[string]string{"message": string(line)})
		}
		if err := enc.Encode(LogEntry{Line: line, Next: next}); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && !started {
		reply(w, nil, err)
		return
	}
	start()
	if err != nil {
		enc.Encode(LogEntry{Error: err.Error()})
		return
	}
	enc.Encode(LogEntry{Deploy: d})
}

// reply answers v as JSON, or err with the code it calls for (see Backend).
func reply(w http.ResponseWriter, v any, err error) {
	code := http.StatusOK
	switch {
	case errors.Is(err, ErrNothingToDo):
		code = http.StatusConflict
	case errors.Is(err, state.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case err != nil:
		code = http.StatusInternalServerError
	}
	if err != nil {
		v = map[string]string{"error": err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Listen binds the admin socket at path in a directory only the agent's user can enter, so
// the socket is never reachable by others, not even for the moment before a chmod. It fails
// when another agent answers on path; a socket left by an agent that died is replaced.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create admin socket dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create admin socket dir: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another agent is running", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}
