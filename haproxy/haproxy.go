package haproxy

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds one admin-socket command when Client.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// haproxyPoll is how often Drain and WaitUp ask haproxy again.
const haproxyPoll = 100 * time.Millisecond

// maxAnswer bounds what one command may answer (show stat of a large configuration is a
// few hundred KiB).
const maxAnswer = 16 << 20

// ErrDrainTimeout is returned, wrapped with the number of sessions left, by Drain when the
// server still has sessions when its timeout ends. The server stays in drain; the caller
// decides whether to restart it anyway.
var ErrDrainTimeout = errors.New("sessions still open after the drain timeout")

// ErrNotUp is returned, wrapped with haproxy's last view of the server, by WaitUp when the
// server is not ready and UP in haproxy when its timeout ends.
var ErrNotUp = errors.New("server not up in haproxy")

// Client talks to haproxy's admin socket (a `stats socket … level admin`) to take one
// server of a backend out of rotation around its restart and put it back.
//
// Each command is one connection: connect, write the command and a newline, read the
// answer until haproxy closes. Backend and server names are checked against what haproxy
// allows in a name (CheckName) before they go into a command, so no value can add a
// second command.
type Client struct {
	// Socket is the path of the admin socket.
	Socket string
	// Timeout bounds each command (connect, write, read); zero means DefaultTimeout.
	Timeout time.Duration
}

// The states SetState accepts: haproxy's `set server <backend>/<server> state <state>`.
const (
	// StateReady puts a server back in rotation (leaving drain or maintenance).
	StateReady = "ready"
	// StateDrain stops sending it new sessions by load balancing; sessions under way go
	// on, and clients persisting on it (cookie, stick table) still reach it.
	StateDrain = "drain"
	// StateMaint sends it nothing and stops its health checks.
	StateMaint = "maint"
)

// SetState sets the server's administrative state to StateReady, StateDrain or StateMaint.
// haproxy answers nothing when it did so; any answer ("No such backend.", "No such
// server.", "Permission denied", …) is returned as an error quoting it.
func (h *Client) SetState(ctx context.Context, backend, server, state string) error {
	if err := checkServer(backend, server); err != nil {
		return fmt.Errorf("set state of haproxy server: %w", err)
	}
	switch state {
	case StateReady, StateDrain, StateMaint:
	default:
		return fmt.Errorf("set haproxy server %s/%s state %q: want ready, drain or maint", backend, server, state)
	}
	answer, err := h.command(ctx, "set server "+backend+"/"+server+" state "+state)
	if err != nil {
		return fmt.Errorf("set haproxy server %s/%s state %s: %w", backend, server, state, err)
	}
	if a := strings.TrimSpace(answer); a != "" {
		return fmt.Errorf("set haproxy server %s/%s state %s: haproxy answered %q", backend, server, state, a)
	}
	return nil
}

// Ready puts the server back in rotation (SetState ready). haproxy sends it traffic once
// its own health check also finds it up, which after a restart may take up to rise checks:
// WaitUp waits for that.
func (h *Client) Ready(ctx context.Context, backend, server string) error {
	return h.SetState(ctx, backend, server, StateReady)
}

// Drain sets the server to drain, so that load balancing sends it no new sessions, then
// waits until it has no sessions under way and none queued for it, asking haproxy every
// 100ms. It returns:
//   - nil once the server is idle (at once if it was, or if it is down);
//   - an error wrapping ErrDrainTimeout, with the count left, when timeout ends first;
//   - the error of SetState or of a stat query, or the context's error.
//
// The server stays in drain whatever Drain returns: the caller puts it back with Ready.
func (h *Client) Drain(ctx context.Context, backend, server string, timeout time.Duration) error {
	if err := h.SetState(ctx, backend, server, StateDrain); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := h.stat(ctx, backend, server)
		if err != nil {
			return fmt.Errorf("drain haproxy server %s/%s: %w", backend, server, err)
		}
		left := st.sessions + st.queued
		if left == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("drain haproxy server %s/%s: %w: %d left after %s", backend, server, ErrDrainTimeout, left, timeout)
		}
		if err := sleepCtx(ctx, min(haproxyPoll, time.Until(deadline))); err != nil {
			return fmt.Errorf("drain haproxy server %s/%s: %w", backend, server, err)
		}
	}
}

// WaitUp waits until haproxy has the server ready and operationally up (its health check
// passing), asking every 100ms. It returns nil then, an error wrapping ErrNotUp with the
// last state seen when timeout ends first, or the error of a query or the context.
func (h *Client) WaitUp(ctx context.Context, backend, server string, timeout time.Duration) error {
	if err := checkServer(backend, server); err != nil {
		return fmt.Errorf("wait for haproxy server: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		admin, oper, err := h.state(ctx, backend, server)
		if err != nil {
			return fmt.Errorf("wait for haproxy server %s/%s: %w", backend, server, err)
		}
		if admin == StateReady && oper == "up" {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("wait for haproxy server %s/%s: %w after %s: admin state %s, operational state %s", backend, server, ErrNotUp, timeout, admin, oper)
		}
		if err := sleepCtx(ctx, min(haproxyPoll, time.Until(deadline))); err != nil {
			return fmt.Errorf("wait for haproxy server %s/%s: %w", backend, server, err)
		}
	}
}

// Sessions returns the number of sessions the server is handling now (the scur column of
// `show stat`): requests under way, not idle keep-alive connections.
func (h *Client) Sessions(ctx context.Context, backend, server string) (int, error) {
	if err := checkServer(backend, server); err != nil {
		return 0, fmt.Errorf("count sessions of haproxy server: %w", err)
	}
	st, err := h.stat(ctx, backend, server)
	if err != nil {
		return 0, fmt.Errorf("count sessions of haproxy server %s/%s: %w", backend, server, err)
	}
	return st.sessions, nil
}

// Status returns the server's status as `show stat` and the stats page show it: "UP",
// "DOWN", "DRAIN", "MAINT", "NOLB", "no check", or a transition such as "UP 1/2"
// (going down) or "MAINT (via b/s)". A drained server whose check fails shows "DOWN".
func (h *Client) Status(ctx context.Context, backend, server string) (string, error) {
	if err := checkServer(backend, server); err != nil {
		return "", fmt.Errorf("get status of haproxy server: %w", err)
	}
	st, err := h.stat(ctx, backend, server)
	if err != nil {
		return "", fmt.Errorf("get status of haproxy server %s/%s: %w", backend, server, err)
	}
	return st.status, nil
}

// State returns the server's administrative state, StateReady, StateDrain or StateMaint
// (whether forced, inherited from a tracked server or from a failed name resolution), and
// its operational state, "up", "down", "starting" or "stopping" (as its health check
// sees it), from `show servers state`.
func (h *Client) State(ctx context.Context, backend, server string) (admin, oper string, err error) {
	if err := checkServer(backend, server); err != nil {
		return "", "", fmt.Errorf("get state of haproxy server: %w", err)
	}
	admin, oper, err = h.state(ctx, backend, server)
	if err != nil {
		return "", "", fmt.Errorf("get state of haproxy server %s/%s: %w", backend, server, err)
	}
	return admin, oper, nil
}

// state is State for names already checked.
func (h *Client) state(ctx context.Context, backend, server string) (admin, oper string, err error) {
	answer, err := h.command(ctx, "show servers state "+backend)
	if err != nil {
		return "", "", err
	}
	return parseServersState(answer, backend, server)
}

// serverStat is what Drain, Sessions and Status read from a `show stat` row.
type serverStat struct {
	status   string
	sessions int // scur
	queued   int // qcur
}

// stat reads the server's row of `show stat <backend> 4 -1` (the backend's servers only),
// for names already checked.
func (h *Client) stat(ctx context.Context, backend, server string) (serverStat, error) {
	answer, err := h.command(ctx, "show stat "+backend+" 4 -1")
	if err != nil {
		return serverStat{}, err
	}
	return parseStat(answer, backend, server)
}

func parseStat(answer, backend, server string) (serverStat, error) {
	header, rest, ok := strings.Cut(answer, "\n")
	if !strings.HasPrefix(header, "# pxname,") || !ok {
		return serverStat{}, fmt.Errorf("show stat: haproxy answered %q", strings.TrimSpace(answer))
	}
	col := map[string]int{}
	for i, name := range strings.Split(strings.TrimPrefix(header, "# "), ",") {
		col[name] = i
	}
	for _, name := range []string{"pxname", "svname", "qcur", "scur", "status"} {
		if _, ok := col[name]; !ok {
			return serverStat{}, fmt.Errorf("show stat: no %s column in %q", name, header)
		}
	}
	r := csv.NewReader(strings.NewReader(rest))
	r.FieldsPerRecord = -1
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return serverStat{}, fmt.Errorf("show stat: %w", err)
		}
		if len(rec) <= max(col["pxname"], col["svname"], col["qcur"], col["scur"], col["status"]) ||
			rec[col["pxname"]] != backend || rec[col["svname"]] != server {
			continue
		}
		st := serverStat{status: rec[col["status"]]}
		if st.sessions, err = strconv.Atoi(rec[col["scur"]]); err != nil {
			return serverStat{}, fmt.Errorf("show stat: scur %q: not a number", rec[col["scur"]])
		}
		if q := rec[col["qcur"]]; q != "" {
			if st.queued, err = strconv.Atoi(q); err != nil {
				return serverStat{}, fmt.Errorf("show stat: qcur %q: not a number", q)
			}
		}
		return st, nil
	}
	return serverStat{}, fmt.Errorf("show stat: haproxy has no server %s in backend %s", server, backend)
}

// haproxy's srv_admin flags (include/haproxy/server-t.h) and srv_state values.
const (
	admMaint = 0x01 | 0x02 | 0x04 | 0x20 // forced, inherited, configured, resolution
	admDrain = 0x08 | 0x10               // forced, inherited
)

var operStates = []string{0: "down", 1: "starting", 2: "up", 3: "stopping"}

func parseServersState(answer, backend, server string) (admin, oper string, err error) {
	lines := strings.Split(answer, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# be_id ") {
		return "", "", fmt.Errorf("show servers state: haproxy answered %q", strings.TrimSpace(answer))
	}
	col := map[string]int{}
	for i, name := range strings.Fields(strings.TrimPrefix(lines[1], "# ")) {
		col[name] = i
	}
	for _, name := range []string{"be_name", "srv_name", "srv_op_state", "srv_admin_state"} {
		if _, ok := col[name]; !ok {
			return "", "", fmt.Errorf("show servers state: no %s column in %q", name, lines[1])
		}
	}
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) <= max(col["be_name"], col["srv_name"], col["srv_op_state"], col["srv_admin_state"]) ||
			f[col["be_name"]] != backend || f[col["srv_name"]] != server {
			continue
		}
		adm, err1 := strconv.Atoi(f[col["srv_admin_state"]])
		op, err2 := strconv.Atoi(f[col["srv_op_state"]])
		if err1 != nil || err2 != nil || op < 0 || op >= len(operStates) {
			return "", "", fmt.Errorf("show servers state: unexpected states in %q", line)
		}
		switch {
		case adm&admMaint != 0:
			admin = StateMaint
		case adm&admDrain != 0:
			admin = StateDrain
		default:
			admin = StateReady
		}
		return admin, operStates[op], nil
	}
	return "", "", fmt.Errorf("show servers state: haproxy has no server %s in backend %s", server, backend)
}

// command sends one command and returns haproxy's whole answer. The connection is bounded
// by h.Timeout and by ctx.
func (h *Client) command(ctx context.Context, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\r\n;") {
		return "", fmt.Errorf("haproxy command %q: holds a newline or ';'", cmd) // callers check names: a bug
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "unix", h.Socket)
	if err != nil {
		return "", fmt.Errorf("connect to haproxy admin socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	// Once ctx ends, its error is set before the deadline in the past interrupts the i/o.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	ioErr := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no answer within %s: %w", timeout, os.ErrDeadlineExceeded)
		}
		return err
	}

	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("send %q to haproxy %s: %w", cmd, h.Socket, ioErr(err))
	}
	answer, err := io.ReadAll(io.LimitReader(c, maxAnswer+1))
	if err != nil {
		return "", fmt.Errorf("read answer to %q from haproxy %s: %w", cmd, h.Socket, ioErr(err))
	}
	if len(answer) > maxAnswer {
		return "", fmt.Errorf("read answer to %q from haproxy %s: longer than %d bytes", cmd, h.Socket, maxAnswer)
	}
	return string(answer), nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// CheckName reports whether name can be a haproxy backend or server name: haproxy allows
// letters, digits, '.', '_', '-' and ':' only. Names that pass cannot carry a second
// command (no space, newline, ';', '/' or '<').
func CheckName(name string) error {
	if name == "" {
		return errors.New("haproxy name is empty")
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-' || r == ':') {
			return fmt.Errorf("haproxy name %q: %q not allowed (letters, digits, '.', '_', '-' and ':' only)", name, r)
		}
	}
	return nil
}

func checkServer(backend, server string) error {
	if err := CheckName(backend); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if err := CheckName(server); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// ServerName expands an app's haproxy server-name template for one instance: {service},
// {instance} (1-based) and {port} are replaced, e.g. "web{instance}" gives "web1" and
// "{service}-{port}" gives "web-3000". An unknown or unclosed placeholder, or a result
// haproxy would not accept as a name (CheckName), is an error.
func ServerName(template, service string, instance, port int) (string, error) {
	var b strings.Builder
	rest := template
	for {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			b.WriteString(rest)
			break
		}
		if rest[i] == '}' {
			return "", fmt.Errorf("haproxy server name template %q: '}' without '{'", template)
		}
		b.WriteString(rest[:i])
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("haproxy server name template %q: unclosed '{'", template)
		}
		switch p := rest[i+1 : i+j]; p {
		case "service":
			b.WriteString(service)
		case "instance":
			b.WriteString(strconv.Itoa(instance))
		case "port":
			if port <= 0 {
				return "", fmt.Errorf("haproxy server name template %q: {port}, but the service has no port", template)
			}
			b.WriteString(strconv.Itoa(port))
		default:
			return "", fmt.Errorf("haproxy server name template %q: unknown placeholder {%s} (want {service}, {instance} or {port})", template, p)
		}
		rest = rest[i+j+1:]
	}
	name := b.String()
	if err := CheckName(name); err != nil {
		return "", fmt.Errorf("haproxy server name template %q: %w", template, err)
	}
	return name, nil
}
