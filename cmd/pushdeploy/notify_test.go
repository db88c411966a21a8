package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// datagrams is a notification socket as systemd opens one for a Type=notify service: it
// collects every datagram sent to it.
type datagrams struct {
	path string
	conn *net.UnixConn
	done chan struct{}

	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *datagrams {
	t.Helper()
	d := &datagrams{path: filepath.Join(t.TempDir(), "notify"), done: make(chan struct{})}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: d.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	d.conn = conn
	go func() {
		defer close(d.done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			d.mu.Lock()
			d.msgs = append(d.msgs, string(buf[:n]))
			d.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-d.done })
	return d
}

func (d *datagrams) all() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.msgs)
}

// await waits until msg has come n times.
func (d *datagrams) await(t *testing.T, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		count := 0
		for _, m := range d.all() {
			if m == msg {
				count++
			}
		}
		if count >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q came %d times, want %d; datagrams: %q", msg, count, n, d.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestE2E_notifySocket: the agent binary, given NOTIFY_SOCKET and WATCHDOG_USEC as systemd
// gives them, sends the datagrams a Type=notify unit with WatchdogSec= expects.
func TestE2E_notifySocket(t *testing.T) {
	e := setupE2E(t)
	sd := listenNotify(t)
	e.env = []string{"NOTIFY_SOCKET=" + sd.path, "WATCHDOG_USEC=400000"} // pings every 200 ms
	e.start()
	sd.await(t, "READY=1\nSTATUS=idle; 1 app", 1)
	if first := sd.all()[0]; first != "READY=1\nSTATUS=idle; 1 app" {
		t.Errorf("first datagram: got %q, want READY=1 with the status", first)
	}
	sd.await(t, "WATCHDOG=1", 2)

	closed := filepath.Join(e.dir, "gate-closed")
	os.WriteFile(closed, nil, 0o644)
	e.repo.Write("VERSION", "1\n", 0o644)
	sha := e.repo.Commit("one")
	e.repo.Git("push", e.bare.Path(), "main:deploy-production")
	sd.await(t, "STATUS=deploying web "+sha[:12]+": running script", 1)
	os.Remove(closed)
	if d := e.waitFor(sha); d.Status != "succeeded" {
		t.Fatalf("deploy: got %s (%s), want succeeded", d.Status, d.Error)
	}
	sd.await(t, "STATUS=idle; 1 app", 1)

	e.kill(syscall.SIGTERM)
	msgs := sd.all()
	if last := msgs[len(msgs)-1]; last != "STOPPING=1\nSTATUS=stopping" {
		t.Errorf("last datagram: got %q, want STOPPING=1", last)
	}
}
