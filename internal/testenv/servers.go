package testenv

import (
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/githttp"
	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
)

// FileURL returns the file:// URL of a local repository path.
func FileURL(path string) string { return "file://" + path }

// GitDaemon serves every repository under root with `git daemon` on
// 127.0.0.1 and returns the base URL "git://127.0.0.1:N/"; a repository
// root/acme/web.git is at base+"acme/web.git". The daemon runs in its own
// process group, which is killed and waited for in t.Cleanup.
func GitDaemon(t testing.TB, root string) string {
	t.Helper()
	needGit(t)
	dir, err := execPath()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "git-daemon")); err != nil {
		Unavailable(t, "git daemon", "no git-daemon in %s (Debian package git)", dir)
	}

	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		d, err := startDaemon(root, port)
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(d.stop)
		return fmt.Sprintf("git://127.0.0.1:%d/", port)
	}
	t.Fatalf("start git daemon: %v", lastErr)
	return ""
}

type daemon struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned
}

func startDaemon(root string, port int) (*daemon, error) {
	stderr := new(syncbuf.Buffer)
	cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all",
		"--base-path="+root, "--listen=127.0.0.1", fmt.Sprintf("--port=%d", port),
		"--informative-errors", root)
	cmd.Env = gitEnv()
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start git daemon: %w", err)
	}
	d := &daemon{cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait() // the exit status is uninteresting: stop kills it
		close(d.exited)
	}()

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("git daemon on port %d exited: %s", port, stderr.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return d, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.stop()
	return nil, fmt.Errorf("git daemon on port %d: not accepting after 10s: %s", port, stderr.String())
}

// stop kills the daemon's process group (the daemon and the upload-pack
// children it forked) and waits until all of them exited.
func (d *daemon) stop() {
	killGroup(d.cmd.Process.Pid, d.exited)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// GitHTTP serves every repository under root with `git http-backend` (smart
// HTTP, fetch only) on 127.0.0.1 and returns the base URL
// "http://127.0.0.1:N/". The server is closed in t.Cleanup.
func GitHTTP(t testing.TB, root string) string {
	t.Helper()
	url, _ := GitHTTPCounting(t, root)
	return url
}

// GitHTTPCounting is GitHTTP that also reports, through sent, the total number
// of response body bytes the server has written to clients so far, so a test
// can measure what one fetch transferred (read sent before and after).
func GitHTTPCounting(t testing.TB, root string) (url string, sent func() int64) {
	t.Helper()
	var n atomic.Int64
	url = serveGitHTTP(t, root, func(h http.Handler) http.Handler { return githttp.Count(h, &n) })
	return url, n.Load
}

// GitHTTPToken is GitHTTP that, like GitHub, serves only clients sending basic auth with
// user x-access-token and the given token as password, and answers others 401.
func GitHTTPToken(t testing.TB, root, token string) string {
	t.Helper()
	return serveGitHTTP(t, root, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			user, pass, ok := r.BasicAuth()
			if !ok || user != "x-access-token" || pass != token {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
}

func serveGitHTTP(t testing.TB, root string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	needGit(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.1: %v", err)
	}
	return serveGitHTTPOn(t, root, l, wrap)
}

// serveGitHTTPOn serves git http-backend for the repositories under root on l, until
// t.Cleanup closes it, and returns its base URL.
func serveGitHTTPOn(t testing.TB, root string, l net.Listener, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	needGit(t)
	dir, err := execPath()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := filepath.Join(dir, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		Unavailable(t, "git http-backend", "no git-http-backend in %s (Debian package git)", dir)
	}
	h := &cgi.Handler{
		Path: backend,
		Dir:  root,
		Env: append([]string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
		}, gitEnvVars...),
		Stderr: &testLogWriter{t: t, prefix: "git http-backend: "},
	}
	srv := httptest.NewUnstartedServer(wrap(h))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// testLogWriter sends a program's output to the test log, line by line, each line
// after prefix.
type testLogWriter struct {
	t      testing.TB
	prefix string
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.t.Log(w.prefix + line)
		}
	}
	return len(p), nil
}
