package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// gitEnvVars keep the machine's and the user's git configuration out of every git process
// the bench starts, so it measures the same thing everywhere, and stop git from prompting.
var gitEnvVars = []string{
	"GIT_CONFIG_NOSYSTEM=1",
	"GIT_CONFIG_GLOBAL=" + os.DevNull,
	"GIT_TERMINAL_PROMPT=0",
	"LC_ALL=C",
}

func gitEnv() []string { return append(os.Environ(), gitEnvVars...) }

// gitOutput runs git in dir and returns its trimmed stdout; the error carries its stderr.
func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// gitServer serves every repository under a root with `git http-backend` (smart HTTP) on
// 127.0.0.1, and counts the response bytes it sends: the bytes on the wire of a fetch.
type gitServer struct {
	URL string // base URL, "http://127.0.0.1:N/"

	srv    *http.Server
	sent   atomic.Int64
	served sync.WaitGroup
	stderr *lockedBuffer
}

func startGitServer(root string) (*gitServer, error) {
	execPath, err := gitOutput(context.Background(), "", "--exec-path")
	if err != nil {
		return nil, err
	}
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return nil, fmt.Errorf("git http-backend is not installed: %w", err)
	}
	s := &gitServer{stderr: new(lockedBuffer)}
	h := &cgi.Handler{
		Path:   backend,
		Dir:    root,
		Env:    append([]string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}, gitEnvVars...),
		Stderr: s.stderr,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	s.URL = "http://" + ln.Addr().String() + "/"
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(&countingWriter{ResponseWriter: w, n: &s.sent}, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.served.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(s.stderr, "serve: %v\n", err)
		}
	})
	return s, nil
}

// Sent is the total of response bytes written so far; read it before and after a fetch.
func (s *gitServer) Sent() int64 { return s.sent.Load() }

// Log is what git http-backend wrote to stderr.
func (s *gitServer) Log() string { return s.stderr.String() }

// Close stops the server, waiting up to 10 s for requests under way (each a git child).
func (s *gitServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.served.Wait()
	return err
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
