package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pushdeploy/pushdeploy/internal/procgroup"
)

// Probe checks one instance once. Check returns nil when the instance answered as a healthy
// one does, or an error saying what was seen instead, such as
// "GET http://127.0.0.1:3001/health: status 503: <start of the body>",
// "dial tcp 127.0.0.1:3001: connect: connection refused",
// "GET http://127.0.0.1:3001/health: timed out after 2s" or
// `command ["bin/check"] exited 3: <end of its output>`.
//
// Every check is bounded by ctx's deadline, which is the probe's timeout: a check that does
// not finish by then returns an error wrapping ErrTimeout, "timed out after <the time it
// had>". When ctx is cancelled for another reason the error wraps context.Cause(ctx).
type Probe interface {
	Check(ctx context.Context) error
}

// ErrTimeout is wrapped by a probe's error when the check did not finish within its timeout.
var ErrTimeout = errors.New("timed out")

const (
	// maxBody bounds how much of an HTTP answer is read, so a health endpoint that streams
	// cannot hold a probe beyond reading it.
	maxBody = 64 << 10
	// bodyExcerpt is how much of an unhealthy answer's body its error quotes.
	bodyExcerpt = 200
	// outputTail is how much of a failed command's output (the end) its error quotes.
	outputTail = 512
)

// defaultPath is the search path for a bare command name when env has no PATH: systemd's
// own, which is where the service's command is looked up too.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ProbeFor returns the probe spec asks for, for the instance listening on port (its PORT),
// of the release in releaseDir:
//   - HTTP: HTTPProbe(port, spec.HTTP).
//   - TCP: TCPProbe(port).
//   - Command: CommandProbe in releaseDir/spec.WorkDir with env, as the service's command
//     runs: a program with a slash is resolved from there and must stay inside releaseDir; a
//     bare name is looked up in env's PATH, or in systemd's search path when env has none.
//   - None of them: nil and no error; Wait then decides by the unit's state alone.
//
// It returns an error when more than one is set, when an HTTP or TCP check has no valid
// port, and when a command is empty or its program would leave the release.
func ProbeFor(spec Spec, port int, releaseDir string, env []string) (Probe, error) {
	n := 0
	for _, set := range []bool{spec.HTTP != "", spec.TCP, spec.Command != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, nil
	case n > 1:
		return nil, fmt.Errorf("health check: want one of http, tcp and command, got %d", n)
	case (spec.HTTP != "" || spec.TCP) && (port < 1 || port > 65535):
		return nil, fmt.Errorf("health check: an http or tcp check needs a port 1..65535, got %d", port)
	case spec.HTTP != "":
		if !strings.HasPrefix(spec.HTTP, "/") {
			return nil, fmt.Errorf("health check: http path must start with /, got %q", spec.HTTP)
		}
		return HTTPProbe(port, spec.HTTP), nil
	case spec.TCP:
		return TCPProbe(port), nil
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return nil, errors.New("health check: command must not be empty")
	}
	if spec.WorkDir != "" && !filepath.IsLocal(spec.WorkDir) {
		return nil, fmt.Errorf("health check: workdir %q must stay inside the release", spec.WorkDir)
	}
	dir := filepath.Join(releaseDir, spec.WorkDir)
	argv := append([]string(nil), spec.Command...)
	if p := argv[0]; strings.Contains(p, "/") && !filepath.IsAbs(p) {
		if !filepath.IsLocal(filepath.Join(spec.WorkDir, p)) {
			return nil, fmt.Errorf("health check: relative program %q must stay inside the release", p)
		}
		argv[0] = filepath.Join(dir, p)
	}
	return CommandProbe(argv, dir, env), nil
}

// HTTPProbe checks that GET http://127.0.0.1:<port><path> answers 2xx. Redirects are not
// followed (a 3xx is unhealthy: the instance must answer itself), at most 64 KiB of the body
// is read, and every check opens a new connection, so a check after a restart reaches the
// new process rather than a kept-alive connection to the old one. No proxy is used.
func HTTPProbe(port int, path string) Probe {
	return &httpProbe{
		url: "http://127.0.0.1:" + strconv.Itoa(port) + path,
		client: &http.Client{
			Transport: &http.Transport{
				DisableKeepAlives:  true,
				DisableCompression: true,
				DialContext:        (&net.Dialer{}).DialContext,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

type httpProbe struct {
	url    string
	client *http.Client
}

func (p *httpProbe) String() string { return "GET " + p.url }

func (p *httpProbe) Check(ctx context.Context) error {
	limit := timeLeft(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", p.url, err)
	}
	req.Header.Set("User-Agent", "pushdeploy-health")
	resp, err := p.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return probeErr(ctx, "GET "+p.url, limit, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: status %d: %s", p.url, resp.StatusCode, excerpt(body, bodyExcerpt))
	}
	if err != nil {
		return probeErr(ctx, "GET "+p.url+": read body", limit, err)
	}
	return nil
}

// TCPProbe checks that a connection to 127.0.0.1:<port> is accepted; it is closed at once.
func TCPProbe(port int) Probe {
	return &tcpProbe{addr: "127.0.0.1:" + strconv.Itoa(port)}
}

type tcpProbe struct{ addr string }

func (p *tcpProbe) String() string { return "connect " + p.addr }

func (p *tcpProbe) Check(ctx context.Context) error {
	limit := timeLeft(ctx)
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	switch {
	case err != nil && ctx.Err() != nil:
		return probeErr(ctx, "dial tcp "+p.addr, limit, err)
	case err != nil:
		return err // "dial tcp 127.0.0.1:3001: connect: connection refused"
	}
	return c.Close()
}

// CommandProbe checks that argv exits 0. It is executed without a shell, in dir, with exactly
// env as its environment (nil is an empty one, never the agent's). A program without a slash
// is looked up in env's PATH, or in systemd's search path when env has none; a relative one
// with a slash is taken from dir.
//
// The command runs in its own process group. At the timeout the whole group is killed
// (SIGKILL), so a check leaves nothing running; the group is killed as well once the
// command exits, so a background process it started does not outlive the check. The error of
// a failed command ends with the last 512 bytes of its output (stdout and stderr).
func CommandProbe(argv []string, dir string, env []string) Probe {
	return &commandProbe{argv: append([]string(nil), argv...), dir: dir, env: append([]string{}, env...)}
}

type commandProbe struct {
	argv []string
	dir  string
	env  []string
}

func (p *commandProbe) String() string { return fmt.Sprintf("command %q", p.argv) }

func (p *commandProbe) Check(ctx context.Context) error {
	what := p.String()
	limit := timeLeft(ctx)
	if len(p.argv) == 0 {
		return fmt.Errorf("%s: empty command", what)
	}
	path, err := p.lookPath()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	cmd := exec.CommandContext(ctx, path, p.argv[1:]...)
	cmd.Args[0] = p.argv[0]
	cmd.Dir, cmd.Env = p.dir, p.env
	out := &tail{max: outputTail}
	werr := procgroup.Run(cmd, out, syscall.SIGKILL)
	if ctx.Err() != nil {
		return probeErr(ctx, what, limit, ctx.Err())
	}
	if werr == nil {
		return nil
	}
	if ee, ok := errors.AsType[*exec.ExitError](werr); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("%s killed by signal %v: %s", what, ws.Signal(), out.text())
		}
		return fmt.Errorf("%s exited %d: %s", what, ee.ExitCode(), out.text())
	}
	return fmt.Errorf("%s: %w", what, werr)
}

// lookPath finds the program to execute: a name with a slash as is (relative to dir), a bare
// name in env's PATH or systemd's search path.
func (p *commandProbe) lookPath() (string, error) {
	name := p.argv[0]
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(p.dir, name)
		}
		return name, nil
	}
	search := defaultPath
	for _, kv := range p.env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			search = v
		}
	}
	for _, d := range filepath.SplitList(search) {
		if !filepath.IsAbs(d) {
			continue // never the working directory, whatever PATH says
		}
		f := filepath.Join(d, name)
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", name, search)
}

// timeLeft is how long ctx gives a check, for the "timed out after" message; zero when ctx
// has no deadline.
func timeLeft(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return 0
}

// probeErr describes err from the check what: a timeout when ctx's deadline passed, ctx's
// cause when it was cancelled, err otherwise.
func probeErr(ctx context.Context, what string, limit time.Duration, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		if limit <= 0 {
			return fmt.Errorf("%s: %w", what, ErrTimeout)
		}
		return fmt.Errorf("%s: %w after %v", what, ErrTimeout, roundLimit(limit))
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// roundLimit writes the time a check had the way its timeout was configured: 2s, not
// 1.999987s. It rounds up, because the check measures what was left of its timeout when it
// started, a little less than the timeout on a busy machine.
func roundLimit(d time.Duration) time.Duration {
	step := 10 * time.Millisecond
	if d >= time.Second {
		step = 100 * time.Millisecond
	}
	return (d + step - 1).Truncate(step)
}

// excerpt is the start of b, at most n bytes, as one line of valid text.
func excerpt(b []byte, n int) string {
	cut := len(b) > n
	if cut {
		b = b[:n]
		// Drop a rune the cut split in two.
		i := len(b) - 1
		for i > 0 && i > len(b)-utf8.UTFMax && !utf8.RuneStart(b[i]) {
			i--
		}
		if i >= 0 && !utf8.FullRune(b[i:]) {
			b = b[:i]
		}
	}
	s := oneLine(string(b))
	if s == "" {
		return "(empty body)"
	}
	if cut {
		s += " …"
	}
	return s
}

// oneLine makes s valid UTF-8 on one line: control characters and runs of space become one
// space.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// tail keeps the last max bytes written to it. It is not safe for concurrent use: one
// goroutine copies a command's output into it.
type tail struct {
	max int
	buf []byte
	cut bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tail) text() string {
	b := t.buf
	if t.cut {
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
	}
	s := oneLine(string(b))
	switch {
	case s == "":
		return "(no output)"
	case t.cut:
		return "… " + s
	}
	return s
}
