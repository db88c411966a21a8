package etcdconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults for Config's zero fields.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints are etcd's client URLs, "http://127.0.0.1:2379", "https://…", or
	// host:port (plain HTTP unless TLS files are given). Required.
	Endpoints []string
	// CACert is a PEM file of CAs to verify the server with; without it an https
	// endpoint is verified with the system's roots.
	CACert string
	// Cert and Key are PEM files of a client certificate and its key: both or neither.
	Cert, Key string
	// Username and Password authenticate with etcd's auth. The password is never
	// logged and never part of an error.
	Username string
	Password string
	// DialTimeout bounds connecting (and authenticating); DefaultDialTimeout if zero.
	DialTimeout time.Duration
	// RequestTimeout bounds every request; DefaultRequestTimeout if zero.
	RequestTimeout time.Duration
}

// FromEnv reads the variables etcdctl reads: ETCDCTL_ENDPOINTS (comma-separated),
// ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_USER ("name" or "name:password"),
// ETCDCTL_PASSWORD, ETCDCTL_DIAL_TIMEOUT and ETCDCTL_COMMAND_TIMEOUT (Go durations, the
// latter becoming RequestTimeout). Unset variables leave their fields zero; a bad value is
// an error naming the variable.
func FromEnv(getenv func(string) string) (Config, error) {
	var c Config
	if v := getenv("ETCDCTL_ENDPOINTS"); v != "" {
		for _, ep := range strings.Split(v, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				c.Endpoints = append(c.Endpoints, ep)
			}
		}
		if len(c.Endpoints) == 0 {
			return Config{}, errors.New("ETCDCTL_ENDPOINTS: no endpoint")
		}
	}
	c.CACert, c.Cert, c.Key = getenv("ETCDCTL_CACERT"), getenv("ETCDCTL_CERT"), getenv("ETCDCTL_KEY")
	c.Username, c.Password = getenv("ETCDCTL_USER"), getenv("ETCDCTL_PASSWORD")
	if name, pass, ok := strings.Cut(c.Username, ":"); ok {
		if c.Password != "" {
			return Config{}, errors.New("ETCDCTL_USER: holds a password and ETCDCTL_PASSWORD is set too")
		}
		c.Username, c.Password = name, pass
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"ETCDCTL_DIAL_TIMEOUT", &c.DialTimeout}, {"ETCDCTL_COMMAND_TIMEOUT", &c.RequestTimeout}} {
		v := getenv(d.name)
		if v == "" {
			continue
		}
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			return Config{}, fmt.Errorf("%s: %q is not a positive duration such as 5s", d.name, v)
		}
		*d.to = t
	}
	return c, nil
}

// Validate checks c as Open would use it; each error names the field.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("endpoints: missing")
	}
	for _, ep := range c.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			return fmt.Errorf("endpoints: %q: %w", ep, err)
		}
	}
	if (c.Cert == "") != (c.Key == "") {
		return errors.New("cert and key: both or neither")
	}
	if c.Password != "" && c.Username == "" {
		return errors.New("username: missing (a password is set)")
	}
	if c.DialTimeout < 0 {
		return errors.New("dial timeout: negative")
	}
	if c.RequestTimeout < 0 {
		return errors.New("request timeout: negative")
	}
	return nil
}

// CheckPrefix checks a key prefix: empty (the default), or starting and ending with "/".
func CheckPrefix(p string) error {
	if p != "" && (!strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/")) {
		return errors.New("prefix: must start and end with /")
	}
	return nil
}

// ValidateTLS reads the TLS files c names and reports what is wrong with them.
func (c Config) ValidateTLS() error {
	_, err := c.tlsConfig()
	return err
}

func checkEndpoint(ep string) error {
	if !strings.Contains(ep, "://") {
		if strings.TrimSpace(ep) == "" || strings.ContainsAny(ep, "/ ") {
			return errors.New("want host:port or an http(s) URL")
		}
		return nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// tlsConfig returns the client's TLS configuration, nil for plain HTTP: TLS is used
// when an endpoint is https or a CA or client certificate is given.
func (c Config) tlsConfig() (*tls.Config, error) {
	https := false
	for _, ep := range c.Endpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if !https && c.CACert == "" && c.Cert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, fmt.Errorf("cacert: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cacert: %s: no PEM certificate", c.CACert)
		}
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("cert and key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (c Config) withDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}
