package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Probe checks one instance once. Check returns nil when the instance answered as a healthy
// one does, or an error saying what was seen instead, such as
// "GET http://127.0.0.1:3001/health: status 503: <start of the body>",
// "dial tcp 127.0.0.1:3001: connect: connection refused",
// "GET http://127.0.0.1:3001/health: timed out after 2s" or, from the probe package rollout
// gives for a command check, `command ["bin/check"] in pushdeploy-web-web.check@1.service:
// job failed (Result exit-code); last 5 journal lines: …`.
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
)

// ProbeFor returns the probe spec asks for, for the instance listening on port (its PORT):
//   - HTTP: HTTPProbe(port, spec.HTTP).
//   - TCP: TCPProbe(port).
//   - Command: command(spec.Command). This package never runs a command check itself: it is
//     the release's code, and must run where the service runs, as its user, in its sandbox,
//     never with the rights of the process that checks (package rollout starts it as a
//     unit of the service manager). The caller says how.
//   - None of them: nil and no error; Wait then decides by the unit's state alone.
//
// It returns an error when more than one is set, when an HTTP or TCP check has no valid
// port, and when a command is empty or the caller gave no way to run one.
func ProbeFor(spec Spec, port int, command func(argv []string) Probe) (Probe, error) {
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
	case len(spec.Command) == 0 || spec.Command[0] == "":
		return nil, errors.New("health check: command must not be empty")
	case command == nil:
		return nil, errors.New("health check: a command check needs a runner")
	}
	return command(slices.Clone(spec.Command)), nil
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
	limit := TimeLeft(ctx)
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
		return ProbeError(ctx, "GET "+p.url, limit, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: status %d: %s", p.url, resp.StatusCode, excerpt(body, bodyExcerpt))
	}
	if err != nil {
		return ProbeError(ctx, "GET "+p.url+": read body", limit, err)
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
	limit := TimeLeft(ctx)
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	switch {
	case err != nil && ctx.Err() != nil:
		return ProbeError(ctx, "dial tcp "+p.addr, limit, err)
	case err != nil:
		return err // "dial tcp 127.0.0.1:3001: connect: connection refused"
	}
	return c.Close()
}

// TimeLeft is how long ctx gives a check, for ProbeError's "timed out after" message; zero
// when ctx has no deadline. A probe reads it when its check starts.
func TimeLeft(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return 0
}

// ProbeError describes err from the check what, for a Probe's Check: "what: timed out after
// <limit>" (wrapping ErrTimeout) when ctx's deadline passed, ctx's cause when it was
// cancelled, "what: err" otherwise. limit is TimeLeft when the check started.
func ProbeError(ctx context.Context, what string, limit time.Duration, err error) error {
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
