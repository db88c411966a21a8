package sdnotify

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen is a notification socket as systemd opens it: a unixgram socket at addr.
func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readDatagram returns the next datagram on conn, failing the test after a second.
func readDatagram(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read datagram: %v", err)
	}
	return string(buf[:n])
}

func TestSocket_Notify(t *testing.T) {
	t.Parallel()
	b := make([]byte, 8)
	rand.Read(b)
	tests := []struct {
		name, addr string
	}{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", "@pushdeploy-sdnotify-test-" + hex.EncodeToString(b)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn := listen(t, tt.addr)
			msg := "READY=1\nSTATUS=idle; 2 apps"
			if err := Socket(tt.addr).Notify(msg); err != nil {
				t.Fatal(err)
			}
			if got := readDatagram(t, conn); got != msg {
				t.Errorf("datagram: got %q, want %q", got, msg)
			}
		})
	}
}

func TestSocket_Notify_nobodyListens(t *testing.T) {
	t.Parallel()
	err := Socket(filepath.Join(t.TempDir(), "gone")).Notify("READY=1")
	if err == nil || !strings.HasPrefix(err.Error(), "notify systemd: ") {
		t.Errorf("got %v, want a notify systemd error", err)
	}
}
