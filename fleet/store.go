package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
)

// Defaults for Config's zero fields.
const (
	DefaultPrefix   = "/pushdeploy/fleet/"
	DefaultLeaseTTL = 10 * time.Second
	// MinLeaseTTL is the shortest lease etcd grants (its election timeout's 1.5 times,
	// rounded up to whole seconds, with etcd's default settings).
	MinLeaseTTL = 2 * time.Second
)

// ErrUnavailable is wrapped by the errors of calls that failed because etcd could not be
// reached or did not answer in time.
var ErrUnavailable = etcdconn.ErrUnavailable

// Config says how to reach etcd and where the fleet's keys live.
type Config struct {
	Conn etcdconn.Config
	// Prefix is where the keys live; DefaultPrefix if empty. It must start and end with "/".
	Prefix string
	// LeaseTTL is how long a host's keys outlive it; DefaultLeaseTTL if zero.
	LeaseTTL time.Duration
	// OnRequest, if not nil, is called once per round trip to etcd with its kind ("get",
	// "txn", "delete", "watch", "grant", "keepalive", "revoke"), for metrics.
	OnRequest func(op string)
}

// Validate checks c as Open would use it; each error names the field.
func (c Config) Validate() error {
	if err := c.Conn.Validate(); err != nil {
		return err
	}
	if err := etcdconn.CheckPrefix(c.Prefix); err != nil {
		return err
	}
	if c.LeaseTTL != 0 && c.LeaseTTL < MinLeaseTTL {
		return fmt.Errorf("lease TTL: at least %s, got %s", MinLeaseTTL, c.LeaseTTL)
	}
	return c.Conn.ValidateTLS()
}

// Store reads and writes the fleet's keys.
type Store struct {
	prefix  string
	ttl     time.Duration
	timeout time.Duration
	conn    *etcdconn.Conn
}

// Open validates cfg and prepares a client; it does not wait for etcd.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	conn, err := etcdconn.Open(cfg.Conn, cfg.OnRequest)
	if err != nil {
		return nil, err
	}
	return &Store{prefix: cfg.Prefix, ttl: cfg.LeaseTTL, timeout: conn.RequestTimeout(), conn: conn}, nil
}

// Close closes the connection to etcd.
func (s *Store) Close() error { return s.conn.Close() }

// LeaseTTL is how long a host's keys outlive it.
func (s *Store) LeaseTTL() time.Duration { return s.ttl }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// checkNames refuses names that would make keys ambiguous.
func checkNames(kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if !nameRE.MatchString(kv[i+1]) {
			return fmt.Errorf("%s %q: want letters, digits, '.', '_' or '-'", kv[i], kv[i+1])
		}
	}
	return nil
}

func (s *Store) hostKey(env, host string) string { return s.prefix + "hosts/" + env + "/" + host }
func (s *Store) seenKey(env, host string) string { return s.prefix + "seen/" + env + "/" + host }
func (s *Store) appPrefix(app, env string) string {
	return s.prefix + "apps/" + app + "/" + env + "/"
}
func (s *Store) wantPrefix(app, env, sha string) string {
	return s.appPrefix(app, env) + "want/" + sha + "/"
}
func (s *Store) slotPrefix(app, env string) string { return s.appPrefix(app, env) + "slot/" }
func (s *Store) haltPrefix(app, env string) string { return s.appPrefix(app, env) + "halt/" }
func (s *Store) lockKey(app, env string) string    { return s.appPrefix(app, env) + "lock" }

// client returns the etcd client and ctx bounded by the request timeout.
func (s *Store) client(ctx context.Context) (*clientv3.Client, context.Context, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	c, err := s.conn.Client(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return c, ctx, cancel, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are marshalled
	}
	return string(b)
}
