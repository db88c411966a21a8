package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/procgroup"
)

func TestHTTPProbe_Check(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	tests := []struct {
		name    string
		answer  answer
		path    string
		timeout time.Duration
		want    string // "" healthy, else a substring of the error
	}{
		{name: "200", answer: always(200, "ok"), path: "/health"},
		{name: "204 with query", answer: always(204, ""), path: "/health?full=1"},
		{name: "503 quotes the body", answer: always(503, "db down\nretry later\n"), path: "/health",
			want: "/health: status 503: db down retry later"},
		{name: "500 empty body", answer: always(500, ""), path: "/", want: "status 500: (empty body)"},
		{name: "body excerpt is bounded", answer: always(500, long), path: "/",
			want: "status 500: " + strings.Repeat("x", bodyExcerpt) + " …"},
		{name: "large 2xx body is read only in part", answer: always(200, long+long), path: "/"},
		{name: "hanging endpoint times out", answer: func(int, time.Duration) (int, string, bool) { return 0, "", true },
			path: "/health", timeout: 150 * time.Millisecond, want: "/health: timed out after 150ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newHealthServer(t, tt.answer)
			p := HTTPProbe(srv.Port, tt.path)
			timeout := cmp.Or(tt.timeout, 2*time.Second)
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			begin := time.Now()
			err := p.Check(ctx)
			took := time.Since(begin)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check: got %v, want healthy", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Check: got healthy, want an error with %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Check: got %q, want it to contain %q", err, tt.want)
			}
			if tt.want != "" && !strings.HasPrefix(err.Error(), fmt.Sprintf("GET http://127.0.0.1:%d%s", srv.Port, tt.path)) {
				t.Errorf("Check: got %q, want it to name the URL", err)
			}
			if tt.timeout != 0 {
				if !errors.Is(err, ErrTimeout) {
					t.Errorf("Check: got %v, want ErrTimeout", err)
				}
				if took < tt.timeout || took > tt.timeout+time.Second {
					t.Errorf("Check took %v, want about the timeout %v", took, tt.timeout)
				}
			}
		})
	}
}

func TestHTTPProbe_Check_noRedirectNoKeepAlive(t *testing.T) {
	target := newHealthServer(t, always(200, "ok"))
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.RedirectHandler(fmt.Sprintf("http://127.0.0.1:%d/", target.Port), http.StatusFound))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	p := HTTPProbe(srv.Listener.Addr().(*net.TCPAddr).Port, "/health")
	err := p.Check(timeoutCtx(t, 2*time.Second))
	if err == nil || !strings.Contains(err.Error(), "status 302") {
		t.Fatalf("Check of a redirect: got %v, want status 302", err)
	}
	if n := target.stats().requests; n != 0 {
		t.Errorf("redirect target got %d requests, want 0 (redirects are not followed)", n)
	}
	for range 2 {
		_ = p.Check(timeoutCtx(t, 2*time.Second))
	}
	if c := conns.Load(); c != 3 {
		t.Errorf("3 checks opened %d connections, want 3 (no keep-alive)", c)
	}
}

func TestHTTPProbe_Check_refused(t *testing.T) {
	port := closedPort(t)
	err := HTTPProbe(port, "/health").Check(timeoutCtx(t, 2*time.Second))
	want := fmt.Sprintf("GET http://127.0.0.1:%d/health: dial tcp 127.0.0.1:%d: connect: connection refused", port, port)
	if err == nil || err.Error() != want {
		t.Fatalf("Check: got %v, want %q", err, want)
	}
}

func TestTCPProbe_Check(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	open := l.Addr().(*net.TCPAddr).Port
	closed := closedPort(t)

	tests := []struct {
		name string
		port int
		want string
	}{
		{name: "accepted", port: open},
		{name: "refused", port: closed,
			want: fmt.Sprintf("dial tcp 127.0.0.1:%d: connect: connection refused", closed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := TCPProbe(tt.port).Check(timeoutCtx(t, 2*time.Second))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check: got %v, want healthy", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("Check: got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCommandProbe_Check(t *testing.T) {
	bin := t.TempDir()
	writeScript(t, bin, "my-check", "exit 0\n")
	tests := []struct {
		name string
		argv []string
		env  []string
		want string // "" healthy, else the error's end (or all of it, see exact)
	}{
		{name: "exit 0", argv: []string{"sh", "-c", "exit 0"}},
		{name: "exit 3 quotes output", argv: []string{"sh", "-c", "echo starting; echo db down >&2; exit 3"},
			want: `command ["sh" "-c" "echo starting; echo db down >&2; exit 3"] exited 3: starting db down`},
		{name: "no output", argv: []string{"sh", "-c", "exit 1"}, want: "exited 1: (no output)"},
		{name: "output tail", argv: []string{"sh", "-c", `i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done; exit 1`},
			want: "line1998 line1999"},
		{name: "signal", argv: []string{"sh", "-c", "kill -TERM $$"}, want: "killed by signal terminated: (no output)"},
		{name: "env is passed", argv: []string{"sh", "-c", `test "$PORT" = 3001`}, env: []string{"PORT=3001"}},
		{name: "agent env is not", argv: []string{"sh", "-c", `test -z "$HOME$PUSHDEPLOY_TEST_SECRET"`}},
		{name: "PATH from env", argv: []string{"my-check"}, env: []string{"PATH=" + bin}},
		{name: "not found", argv: []string{"no-such-check-program"},
			want: `command ["no-such-check-program"]: no-such-check-program not found in ` + defaultPath},
	}
	t.Setenv("PUSHDEPLOY_TEST_SECRET", "s3cret")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CommandProbe(tt.argv, t.TempDir(), tt.env).Check(timeoutCtx(t, 5*time.Second))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check: got %v, want healthy", err)
			case tt.want != "" && (err == nil || !strings.HasSuffix(err.Error(), tt.want)):
				t.Fatalf("Check: got %v, want it to end with %q", err, tt.want)
			}
			if tt.name == "output tail" && (len(err.Error()) > 700 || strings.Contains(err.Error(), "line0 ")) {
				t.Errorf("Check: got %d bytes %q…, want only the output's tail", len(err.Error()), err.Error()[:100])
			}
		})
	}
}

// TestCommandProbe_Check_killsGroup runs a check that outlives its timeout with a child in
// the background: both must be gone once Check returns.
func TestCommandProbe_Check_killsGroup(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "check", `sleep 30 &
echo $! > "$1"
echo $$ > "$2"
sleep 30
`)
	childFile, shellFile := filepath.Join(dir, "child.pid"), filepath.Join(dir, "shell.pid")
	p := CommandProbe([]string{script, childFile, shellFile}, dir, nil)
	const timeout = 300 * time.Millisecond
	begin := time.Now()
	err := p.Check(timeoutCtx(t, timeout))
	took := time.Since(begin)
	if !errors.Is(err, ErrTimeout) || !strings.HasSuffix(err.Error(), "timed out after 300ms") {
		t.Fatalf("Check: got %v, want timed out after 300ms", err)
	}
	if took > timeout+procgroup.OutputGrace+time.Second {
		t.Errorf("Check took %v, want about %v", took, timeout)
	}
	for _, f := range []string{shellFile, childFile} {
		if pid := readPID(t, f); !gone(pid) {
			t.Errorf("process %d (%s) still runs after the timeout", pid, filepath.Base(f))
		}
	}
}

// TestCommandProbe_Check_backgroundChild runs a check that exits 0 at once but leaves a
// child holding its output: Check must not wait for the child, and the child must be gone.
func TestCommandProbe_Check_backgroundChild(t *testing.T) {
	dir := t.TempDir()
	childFile := filepath.Join(dir, "child.pid")
	p := CommandProbe([]string{"sh", "-c", `sleep 30 & echo $! > "$0"; exit 0`, childFile}, dir, nil)
	begin := time.Now()
	if err := p.Check(timeoutCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Check: got %v, want healthy", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Check took %v, want it not to wait for the background child", took)
	}
	if pid := readPID(t, childFile); !gone(pid) {
		t.Errorf("background child %d still runs", pid)
	}
}

func TestProbeFor(t *testing.T) {
	rel := "/srv/app/releases/abc"
	tests := []struct {
		name    string
		spec    Spec
		port    int
		want    string // the probe's String(), "" for no probe
		wantDir string
		err     string
	}{
		{name: "http", spec: Spec{HTTP: "/healthz"}, port: 3001, want: "GET http://127.0.0.1:3001/healthz"},
		{name: "tcp", spec: Spec{TCP: true}, port: 3002, want: "connect 127.0.0.1:3002"},
		{name: "relative command", spec: Spec{Command: []string{"bin/check", "-v"}}, want: `command ["` + rel + `/bin/check" "-v"]`, wantDir: rel},
		{name: "command from workdir", spec: Spec{Command: []string{"../bin/check"}, WorkDir: "web"},
			want: `command ["` + rel + `/bin/check"]`, wantDir: rel + "/web"},
		{name: "bare name", spec: Spec{Command: []string{"curl", "-f"}}, want: `command ["curl" "-f"]`, wantDir: rel},
		{name: "absolute", spec: Spec{Command: []string{"/usr/bin/check"}}, want: `command ["/usr/bin/check"]`, wantDir: rel},
		{name: "none", spec: Spec{Timeout: time.Second}},
		{name: "escapes the release", spec: Spec{Command: []string{"../check"}}, err: `relative program "../check" must stay inside the release`},
		{name: "workdir escapes", spec: Spec{Command: []string{"check"}, WorkDir: "../x"}, err: "workdir"},
		{name: "empty command", spec: Spec{Command: []string{}}, err: "command must not be empty"},
		{name: "two checks", spec: Spec{HTTP: "/", TCP: true}, port: 3000, err: "got 2"},
		{name: "http without port", spec: Spec{HTTP: "/"}, err: "needs a port"},
		{name: "http bad path", spec: Spec{HTTP: "healthz"}, port: 3000, err: "must start with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ProbeFor(tt.spec, tt.port, rel, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ProbeFor: got %v, %v; want error with %q", p, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ProbeFor: %v", err)
			}
			if tt.want == "" {
				if p != nil {
					t.Fatalf("ProbeFor: got %v, want no probe", p)
				}
				return
			}
			if got := p.(fmt.Stringer).String(); got != tt.want {
				t.Errorf("ProbeFor: got %s, want %s", got, tt.want)
			}
			if c, ok := p.(*commandProbe); ok && c.dir != tt.wantDir {
				t.Errorf("ProbeFor: command runs in %s, want %s", c.dir, tt.wantDir)
			}
		})
	}
}

// TestProbeFor_commandRuns runs a release's own check program through ProbeFor.
func TestProbeFor_commandRuns(t *testing.T) {
	rel := t.TempDir()
	writeScript(t, rel, "bin/check", `test "$PORT" = 3001 && test "$(pwd)" = "$1"`+"\n")
	p, err := ProbeFor(Spec{Command: []string{"../bin/check", filepath.Join(rel, "web")}, WorkDir: "web"}, 3001, rel,
		[]string{"PORT=3001"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(rel, "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(timeoutCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("Check: got %v, want healthy", err)
	}
}

func timeoutCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
