package agent

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with serial to certFile and its
// key to keyFile, and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	cert, _ := testenv.WriteServerCert(t, certFile, keyFile, serial)
	return cert
}

// servedSerial connects to addr over TLS, trusting pool, asks /healthz, and returns the
// serial of the certificate the agent presented.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) int64 {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over TLS: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz over TLS: status %d", resp.StatusCode)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
}

// TestAgent_tls: the webhook listener serves HTTPS with the configured pair, and a renewed
// pair is served from the next connection on, without a restart; a renewal that does not
// load keeps the previous certificate.
func TestAgent_tls(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	f := newFixture(t, func(c *config.Config) { c.TLS = &config.TLS{CertFile: certFile, KeyFile: keyFile} })
	pool := x509.NewCertPool()
	pool.AddCert(first)
	if got := servedSerial(t, f.agent.Addr(), pool); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	plain, err := http.Get("http://" + f.agent.Addr() + "/healthz")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200 on a TLS listener")
		}
	}

	// A half-done renewal (a new key beside the old certificate) keeps the old pair.
	time.Sleep(certRecheck + 100*time.Millisecond)
	writeCert(t, filepath.Join(dir, "other.pem"), keyFile, 9)
	if got := servedSerial(t, f.agent.Addr(), pool); got != 1 {
		t.Fatalf("after a mismatched key: serial %d, want the previous 1", got)
	}

	// A complete renewal is served without a restart.
	time.Sleep(certRecheck + 100*time.Millisecond)
	second := writeCert(t, certFile, keyFile, 2)
	pool.AddCert(second)
	var got int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got = servedSerial(t, f.agent.Addr(), pool); got == 2 {
			break
		}
	}
	if got != 2 {
		t.Fatalf("after renewal: serial %d, want 2", got)
	}
}

func TestAgent_tlsMissingFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(testSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), Environments: []string{"production"},
		TLS:  &config.TLS{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"},
		Apps: map[string]*config.App{"web": {Repo: "acme/web", Remote: "file:///nonexistent", SecretFile: secret}}}
	if err := cfg.Complete(config.Env{Hostname: "h"}); err != nil {
		t.Fatal(err)
	}
	a := New(cfg, zerolog.NewTestWriter(t), zerolog.DebugLevel)
	err := a.Open()
	if err == nil {
		a.close()
		t.Fatal("Open succeeded with a missing certificate")
	}
	if !strings.HasPrefix(err.Error(), "tls.cert_file: ") {
		t.Errorf("error %q, want one naming tls.cert_file", err)
	}
}
