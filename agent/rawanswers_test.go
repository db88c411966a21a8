package agent

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// TestRewriteRawAnswer: each of the answers net/http writes itself (as it formats them) comes
// out a 4xx with a JSON reason; anything else, a handler's answer above all, is left alone.
func TestRewriteRawAnswer(t *testing.T) {
	const hdrs = rawErrorHeaders
	for _, c := range []struct {
		name, in string
		code     int // 0: left alone
		reason   string
	}{
		{"431", "HTTP/1.1 431 Request Header Fields Too Large" + hdrs + "431 Request Header Fields Too Large", 431, "headers: larger than 65536 bytes"},
		{"501", "HTTP/1.1 501 Not Implemented" + hdrs + "Unsupported transfer encoding", 400, "Transfer-Encoding: not supported"},
		{"505", "HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version" + hdrs + "505 HTTP Version Not Supported: unsupported protocol version", 400, "HTTP version not supported"},
		{"400 with detail", "HTTP/1.1 400 Bad Request: missing required Host header" + hdrs + "400 Bad Request: missing required Host header", 400, "malformed (missing required Host header)"},
		{"400", "HTTP/1.1 400 Bad Request" + hdrs + "400 Bad Request", 400, "request line or headers: malformed"},
		{"a handler's answer", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\nDate: Sun, 29 Nov 2026 19:00:00 GMT\r\n\r\n{}", 0, ""},
		{"a handler's plain text", "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Sun, 29 Nov 2026 19:00:00 GMT\r\n\r\nno", 0, ""},
		{"a body chunk", "{\"status\":\"queued\"}\n", 0, ""},
		{"status line across the headers", "HTTP/1.1 400 Bad\r\nX: y" + hdrs, 0, ""},
		{"no code", "HTTP/1.1 abc" + hdrs, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, ok := rewriteRawAnswer([]byte(c.in), 64<<10)
			if c.code == 0 {
				if ok {
					t.Fatalf("rewrote %q into %q", c.in, out)
				}
				return
			}
			if !ok {
				t.Fatalf("left %q alone", c.in)
			}
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if err != nil {
				t.Fatalf("rewrite is not an HTTP answer: %v\n%s", err, out)
			}
			body, _ := io.ReadAll(resp.Body)
			var a answer
			if resp.StatusCode != c.code || resp.Header.Get("Content-Type") != "application/json" ||
				json.Unmarshal(body, &a) != nil || a.Status != "error" || !strings.Contains(a.Error, c.reason) || !resp.Close {
				t.Errorf("got %d %q %q (close %v), want %d with a JSON error naming %q",
					resp.StatusCode, resp.Header.Get("Content-Type"), body, resp.Close, c.code, c.reason)
			}
		})
	}
}

// TestAgent_rawAnswersTLS: over the agent's own TLS, what net/http refuses before any handler
// is a JSON 4xx too, and a plain HTTP request to the TLS listener is told so, in plain HTTP
// (TestAgent_tls checks that renewals still load through the listener).
func TestAgent_rawAnswersTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert, _ := testenv.WriteServerCert(t, certFile, keyFile, 1)
	f := newFixture(t, func(c *config.Config) { c.TLS = &config.TLS{CertFile: certFile, KeyFile: keyFile} })
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	send := func(raw string) (*http.Response, []byte) {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", f.agent.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(conn, raw)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	for _, c := range []struct{ raw, reason string }{
		{"POST /webhook/web HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding"},
		{"POST /webhook/web HTTP/2.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "HTTP version"},
		{"POST /webhook/web HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "Host"},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ""},
	} {
		resp, body := send(c.raw)
		var a answer
		err := json.Unmarshal(body, &a)
		switch {
		case c.reason == "" && resp.StatusCode != http.StatusOK:
			t.Errorf("%q: got %d %q, want 200", c.raw, resp.StatusCode, body)
		case c.reason != "" && (resp.StatusCode != http.StatusBadRequest || err != nil || !strings.Contains(a.Error, c.reason)):
			t.Errorf("%q: got %d %q, want 400 with a JSON error naming %q", c.raw, resp.StatusCode, body, c.reason)
		}
	}
	resp, err := http.Get("http://" + f.agent.Addr() + "/healthz")
	if err != nil {
		t.Fatalf("plain HTTP to the TLS listener: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "speaks HTTPS") {
		t.Errorf("plain HTTP to the TLS listener: got %d %q, want 400 saying it speaks HTTPS", resp.StatusCode, body)
	}
}
