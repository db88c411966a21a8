package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HAServer is one server of the backend StartHAProxy configures: an HTTP server on
// 127.0.0.1:Port, known to haproxy as Name.
type HAServer struct {
	Name string
	Port int
}

// HAProxy is a real haproxy private to one test, started by StartHAProxy.
type HAProxy struct {
	// Addr is the HTTP frontend, "127.0.0.1:N"; it sends every request to the one backend.
	// Each answer carries the name of the server that produced it in an X-Server header.
	Addr string
	// Socket is the admin socket (stats socket at level admin, mode 0600): one command per
	// connection, as `socat` or haproxy.Client send them.
	Socket string
	// Config is the configuration file haproxy runs with, for the test log.
	Config string

	pgid int // haproxy's process group, gone after the cleanup
}

// haName is what haproxy accepts in a proxy or server name.
var haName = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)

// StartHAProxy starts Debian's haproxy in master-worker mode in the foreground (`haproxy
// -W -db`), in its own process group, with an HTTP frontend on a free 127.0.0.1 port whose
// only backend is named backend and holds servers, each health-checked over TCP every
// 200ms (fall 2, rise 1) and balanced round-robin. The configuration, pidfile and admin
// socket live in a short temporary directory (unix socket paths are limited to 107
// bytes). It returns once the frontend accepts connections, the admin socket answers and
// every server had its first health check (it is then "UP" or "DOWN" in `show stat`), and
// kills the process group and waits until every process of it exited in t.Cleanup. haproxy's own messages go
// to the test log.
//
// Two failed checks in a row take a server DOWN (one at start, where haproxy puts it one
// check from down) and one passing check brings it back UP. Timeouts are short (connect
// 1s, client and server 10s). There is no `option redispatch`: a request whose server
// refuses connections is retried on that server only (haproxy's default 3 retries) and
// then fails, as a test of rolling restarts wants to see.
//
// It calls Unavailable only when haproxy is not installed (Debian package haproxy).
func StartHAProxy(t testing.TB, backend string, servers []HAServer) *HAProxy {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if bin = "/usr/sbin/haproxy"; !fileExists(bin) {
			Unavailable(t, "haproxy", "not installed (Debian package haproxy)")
		}
	}
	if !haName.MatchString(backend) {
		t.Fatalf("StartHAProxy: backend name %q: haproxy allows only letters, digits, '.', '_', '-' and ':'", backend)
	}
	for _, s := range servers {
		if !haName.MatchString(s.Name) {
			t.Fatalf("StartHAProxy: server name %q: haproxy allows only letters, digits, '.', '_', '-' and ':'", s.Name)
		}
		if s.Port < 1 || s.Port > 65535 {
			t.Fatalf("StartHAProxy: server %s: port %d out of range", s.Name, s.Port)
		}
	}
	dir, err := os.MkdirTemp("", "haproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // registered first, so it runs after the stop
	sock := filepath.Join(dir, "admin.sock")
	cfg := filepath.Join(dir, "haproxy.cfg")

	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := os.WriteFile(cfg, []byte(haproxyConfig(dir, addr, backend, servers)), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(sock) // a previous attempt's
		cmd := exec.Command(bin, "-W", "-db", "-f", cfg)
		cmd.Dir = dir
		cmd.Stdout = &testLogWriter{t: t, prefix: "haproxy: "}
		cmd.Stderr = cmd.Stdout
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start haproxy: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }() // the exit status is uninteresting: stop kills it
		stop := func() { killGroup(cmd.Process.Pid, exited) }
		if waitTCP(addr, exited) && waitHAProxySocket(sock, exited) {
			t.Cleanup(stop)
			if err := waitHAProxyChecked(sock, backend, len(servers)); err != nil {
				t.Fatal(err)
			}
			return &HAProxy{Addr: addr, Socket: sock, Config: cfg, pgid: cmd.Process.Pid}
		}
		stop() // most likely the port was taken in between: try another
	}
	t.Fatal("haproxy did not start (its messages are in the test log)")
	return nil
}

func haproxyConfig(dir, addr, backend string, servers []HAServer) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    stats socket %s mode 600 level admin expose-fd listeners
    pidfile %s

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 2s

frontend fe
    bind %s
    default_backend %s

backend %s
    balance roundrobin
    http-response set-header X-Server %%s
`, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "haproxy.pid"), addr, backend, backend)
	for _, s := range servers {
		fmt.Fprintf(&b, "    server %s 127.0.0.1:%d check inter 200ms fall 2 rise 1\n", s.Name, s.Port)
	}
	return b.String()
}

// waitHAProxySocket waits until the admin socket answers `show info`, or haproxy exits.
func waitHAProxySocket(sock string, exited <-chan struct{}) bool {
	return waitReady(exited, func() bool {
		answer, err := haproxyCommand(sock, "show info")
		return err == nil && strings.Contains(answer, "Name: HAProxy")
	})
}

// waitHAProxyChecked waits until each of the backend's n servers had its first health
// check: haproxy starts servers "UP 1/2" (up, but one failed check from down), and the
// first check makes them "UP" or "DOWN".
func waitHAProxyChecked(sock, backend string, n int) error {
	deadline := time.Now().Add(10 * time.Second)
	var answer string
	for time.Now().Before(deadline) {
		var err error
		if answer, err = haproxyCommand(sock, "show stat "+backend+" 4 -1"); err != nil {
			return fmt.Errorf("haproxy: show stat: %v", err)
		}
		rows := strings.Split(strings.TrimSpace(answer), "\n")
		status := -1
		for i, name := range strings.Split(strings.TrimPrefix(rows[0], "# "), ",") {
			if name == "status" {
				status = i
			}
		}
		if status < 0 {
			return fmt.Errorf("haproxy: show stat has no status column: %q", answer)
		}
		checked := 0
		for _, row := range rows[1:] {
			if f := strings.Split(row, ","); len(f) > status && (f[status] == "UP" || f[status] == "DOWN") {
				checked++
			}
		}
		if checked == n {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("haproxy: servers not all checked after 10s:\n%s", answer)
}

// haproxyCommand sends one command to an admin socket and returns the whole answer.
func haproxyCommand(sock, cmd string) (string, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd + "\n")); err != nil {
		return "", err
	}
	answer, err := io.ReadAll(c)
	return string(answer), err
}
