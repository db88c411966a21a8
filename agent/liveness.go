package agent

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"

	"github.com/pushdeploy/pushdeploy/internal/sdnotify"
)

// newSupervisor returns the supervisor that tells systemd about the agent through
// a.Notifier, with the watchdog's liveness checks when a.Watchdog is set.
func (a *Agent) newSupervisor() *sdnotify.Supervisor {
	s := sdnotify.New(a.Notifier, a.status, newLogger(a.out, a.log.GetLevel()).Str("component", "sdnotify").Logger())
	s.Watchdog = a.Watchdog
	if a.Watchdog > 0 {
		s.Checks = a.livenessChecks()
	}
	return s
}

// livenessChecks are what the watchdog's pings depend on, each bounded by the round's
// deadline:
//
//   - webhook: GET /healthz through the webhook listener over loopback, on a new
//     connection each time, answers 200 (the accept loop, the handlers and free file
//     descriptors, as GitHub needs them);
//   - admin: the admin socket answers an HTTP request at all (the CLI needs it);
//   - state: the state store answers a read (a closed or broken store fails);
//   - queues: every app's queue lock can be taken, and every worker is idle or making
//     progress (checkQueues).
func (a *Agent) livenessChecks() []sdnotify.Check {
	web := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	socket := a.cfg.AdminSocket
	adm := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}}
	healthz := "http://" + loopback(a.webLn.Addr()) + "/healthz"
	var first string // the app whose history the state check reads
	if len(a.apps) > 0 {
		first = slices.Sorted(maps.Keys(a.apps))[0]
	}
	return []sdnotify.Check{
		{Name: "webhook", Func: func(ctx context.Context) error {
			code, err := probe(ctx, web, healthz)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("GET %s: %d", healthz, code)
			}
			return err
		}},
		{Name: "admin", Func: func(ctx context.Context) error {
			_, err := probe(ctx, adm, "http://agent/v1/status?app=%00probe")
			return err
		}},
		{Name: "state", Func: func(context.Context) error {
			_, err := a.state.History(first, 1)
			return err
		}},
		{Name: "queues", Func: a.checkQueues},
	}
}

// probe sends a GET and returns the answer's status code, the body read and dropped.
func probe(ctx context.Context, c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, err
}

// loopback is where the agent reaches its own listener: addr itself, or 127.0.0.1 when it
// listens on every address (a wildcard listener takes IPv4 connections too).
func loopback(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}
