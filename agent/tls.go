package agent

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/config"
)

// certRecheck bounds how often a handshake looks at the certificate files again.
const certRecheck = time.Second

// tlsConfig is the webhook listener's TLS with cfg's certificate. The pair is loaded now,
// so a missing or mismatched file fails the start naming the field, and loaded again at a
// handshake once either file has changed: certbot or an ansible run renews the certificate
// and the next connection gets it, with no restart and no window without a listener. A
// renewal that cannot be loaded (a key that does not match yet, half-written files) keeps
// the previous certificate, logged once for each change of the files.
func tlsConfig(cfg *config.TLS, log zerolog.Logger) (*tls.Config, error) {
	c := &certFiles{cfg: cfg, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}, nil
}

// certFiles is the certificate in use and the files' modification times it was read at.
type certFiles struct {
	cfg *config.TLS
	log zerolog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
}

// load reads the pair and the times it was read at. On failure the pair in use stays; the
// times are taken all the same, so a broken renewal is tried (and logged) once per change.
func (c *certFiles) load() error {
	cst, err := os.Stat(c.cfg.CertFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file: %w", err)
	}
	kst, err := os.Stat(c.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("tls.key_file: %w", err)
	}
	c.certMod, c.keyMod = cst.ModTime(), kst.ModTime()
	cert, err := tls.LoadX509KeyPair(c.cfg.CertFile, c.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file and tls.key_file: %w", err)
	}
	c.cert = &cert
	return nil
}

// get is the listener's GetCertificate: the current pair, reloaded when a file changed.
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.lastCheck) < certRecheck {
		return c.cert, nil
	}
	c.lastCheck = time.Now()
	cst, cerr := os.Stat(c.cfg.CertFile)
	kst, kerr := os.Stat(c.cfg.KeyFile)
	if cerr != nil || kerr != nil || (cst.ModTime().Equal(c.certMod) && kst.ModTime().Equal(c.keyMod)) {
		return c.cert, nil // unchanged, or being replaced right now: keep serving the last good one
	}
	if err := c.load(); err != nil {
		c.log.Warn().Err(err).Msg("tls certificate changed but cannot be loaded: serving the previous one")
		return c.cert, nil
	}
	c.log.Info().Str("cert_file", c.cfg.CertFile).Msg("tls certificate reloaded")
	return c.cert, nil
}
