package renv

import (
	"time"

	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
)

// Config says how to reach etcd (the embedded etcdconn.Config) and where the documents
// live.
type Config struct {
	etcdconn.Config
	// Prefix is where documents live: Prefix + "<app>/<env>/" + leaf key. DefaultPrefix
	// if empty; it must start and end with "/".
	Prefix string
	// OnRequest, if not nil, is called once per round trip to etcd with its kind ("get",
	// "txn", "delete", "watch", "progress"), for metrics.
	OnRequest func(op string)
}

// ConfigFromEnv reads the variables etcdctl reads (etcdconn.FromEnv): ETCDCTL_ENDPOINTS
// (comma-separated), ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_USER ("name" or
// "name:password"), ETCDCTL_PASSWORD, ETCDCTL_DIAL_TIMEOUT and ETCDCTL_COMMAND_TIMEOUT (Go
// durations, the latter becoming RequestTimeout). Unset variables leave their fields zero;
// a bad value is an error naming the variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	ec, err := etcdconn.FromEnv(getenv)
	return Config{Config: ec}, err
}

// Validate checks c as Open would use it; each error names the field.
func (c Config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if err := etcdconn.CheckPrefix(c.Prefix); err != nil {
		return err
	}
	return c.ValidateTLS()
}

// Store reads and writes configuration documents in etcd.
type Store struct {
	prefix  string
	timeout time.Duration
	conn    *etcdconn.Conn
}

// Open validates cfg and prepares a client. It does not wait for a connection: an
// unreachable etcd shows as errors wrapping ErrUnavailable from the calls, each bounded
// by cfg.RequestTimeout, so an agent can start while etcd is down.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	conn, err := etcdconn.Open(cfg.Config, cfg.OnRequest)
	if err != nil {
		return nil, err
	}
	return &Store{prefix: cfg.Prefix, timeout: conn.RequestTimeout(), conn: conn}, nil
}

// Close closes the connection to etcd.
func (s *Store) Close() error { return s.conn.Close() }
