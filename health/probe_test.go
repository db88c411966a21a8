package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

func TestProbeFor(t *testing.T) {
	run := func(argv []string) Probe { return commandStub(argv) }
	tests := []struct {
		name string
		spec Spec
		port int
		run  func([]string) Probe
		want string // the probe's String(), "" for no probe
		err  string
	}{
		{name: "http", spec: Spec{HTTP: "/healthz"}, port: 3001, want: "GET http://127.0.0.1:3001/healthz"},
		{name: "tcp", spec: Spec{TCP: true}, port: 3002, want: "connect 127.0.0.1:3002"},
		{name: "command", spec: Spec{Command: []string{"bin/check", "-v"}}, run: run, want: `stub ["bin/check" "-v"]`},
		{name: "none", spec: Spec{Timeout: time.Second}},
		{name: "command without runner", spec: Spec{Command: []string{"bin/check"}}, err: "a command check needs a runner"},
		{name: "empty command", spec: Spec{Command: []string{}}, run: run, err: "command must not be empty"},
		{name: "two checks", spec: Spec{HTTP: "/", TCP: true}, port: 3000, err: "got 2"},
		{name: "http without port", spec: Spec{HTTP: "/"}, err: "needs a port"},
		{name: "http bad path", spec: Spec{HTTP: "healthz"}, port: 3000, err: "must start with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ProbeFor(tt.spec, tt.port, tt.run)
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
		})
	}
}

// commandStub stands for the caller's command runner.
type commandStub []string

func (c commandStub) String() string                  { return fmt.Sprintf("stub %q", []string(c)) }
func (c commandStub) Check(ctx context.Context) error { return nil }

// TestProbeFor_command hands a command check to the runner the caller gives, with a copy
// of its argv: this package never executes it.
func TestProbeFor_command(t *testing.T) {
	var got []string
	run := func(argv []string) Probe {
		got = argv
		return TCPProbe(1)
	}
	spec := Spec{Command: []string{"bin/check", "-v"}}
	p, err := ProbeFor(spec, 0, run)
	if err != nil || p == nil {
		t.Fatalf("ProbeFor: got %v, %v; want the runner's probe", p, err)
	}
	if !slices.Equal(got, spec.Command) {
		t.Errorf("runner got %q, want %q", got, spec.Command)
	}
	got[0] = "changed"
	if spec.Command[0] != "bin/check" {
		t.Errorf("the runner's argv shares the spec's")
	}
}

func timeoutCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
