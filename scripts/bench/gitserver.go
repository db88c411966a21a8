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

	"github.com/pushdeploy/pushdeploy/internal/githttp"
	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
)

// gitEnvVars keep the machine's and the user's git configuration out of every git process
// the bench starts, so it measures the same thing everywhere, and stop git from prompting.
var gitEnvVars = githttp.Env

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
	stderr *syncbuf.Buffer
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
	s := &gitServer{stderr: new(syncbuf.Buffer)}
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
		Handler:           githttp.Count(h, &s.sent),
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
