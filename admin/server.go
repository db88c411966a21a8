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
	return mux
}

// reply answers v as JSON, or err with the code it calls for (see Backend).
func reply(w http.ResponseWriter, v any, err error) {
	code := http.StatusOK
	switch {
	case errors.Is(err, ErrNothingToDo):
		code = http.StatusConflict
	case errors.Is(err, state.ErrNotFound):
		code = http.StatusNotFound
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
