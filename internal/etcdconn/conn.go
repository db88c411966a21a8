package etcdconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrUnavailable is wrapped by the errors of calls that failed because etcd could not be
// reached or did not answer in time.
var ErrUnavailable = errors.New("etcd unavailable")

// Conn is a connection to etcd whose client is created on first use.
type Conn struct {
	timeout   time.Duration
	onRequest func(string)

	mu     sync.Mutex
	cc     clientv3.Config
	client *clientv3.Client // created on first use: with a username it must reach etcd
}

// Open validates cfg and prepares a client. It does not wait for a connection: an
// unreachable etcd shows as errors wrapping ErrUnavailable from the calls, so an agent
// can start while etcd is down. onRequest, if not nil, hears of every round trip (Op).
func Open(cfg Config, onRequest func(op string)) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &Conn{
		timeout:   cfg.RequestTimeout,
		onRequest: onRequest,
		cc: clientv3.Config{
			Endpoints:   cfg.Endpoints,
			TLS:         tlsCfg,
			Username:    cfg.Username,
			Password:    cfg.Password,
			DialTimeout: cfg.DialTimeout,
			Logger:      zap.NewNop(),
			// Reconnect within a second or two of etcd coming back, not gRPC's default of
			// up to two minutes after a long outage.
			DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: cfg.DialTimeout,
			})},
		},
	}
	if cfg.Username == "" { // without auth, creating the client does not wait for etcd
		if c.client, err = clientv3.New(c.cc); err != nil {
			return nil, fmt.Errorf("create etcd client: %w", err)
		}
	}
	return c, nil
}

// RequestTimeout is how long one request may take.
func (c *Conn) RequestTimeout() time.Duration { return c.timeout }

// Close closes the connection to etcd.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		return nil
	}
	err := c.client.Close()
	c.client = nil
	return err
}

// Client returns the client, creating it if needed: with a username, creating it
// authenticates, which waits for etcd up to the dial timeout, the request timeout or the
// end of ctx, whichever comes first.
func (c *Conn) Client(ctx context.Context) (*clientv3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		// The client outlives ctx: ctx may cut short only its creation (clientv3.New
		// waits for the login on the client's own context).
		base, abort := context.WithCancel(context.Background())
		stop := context.AfterFunc(ctx, abort)
		cc := c.cc
		cc.Context = base
		cl, err := clientv3.New(cc)
		if !stop() { // ctx ended first: the client, if any, is being cancelled
			if cl != nil {
				cl.Close()
			}
			return nil, fmt.Errorf("connect to etcd: %w", c.Classify(ctx.Err()))
		}
		if err != nil {
			return nil, fmt.Errorf("connect to etcd: %w", c.Classify(err))
		}
		c.client = cl
	}
	return c.client, nil
}

// Renew closes cl and makes the next call create a new client, unless cl was replaced
// already: for a client whose streams etcd stopped answering.
func (c *Conn) Renew(cl *clientv3.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl != nil && c.client == cl {
		c.client = nil
		cl.Close()
	}
}

// Classify wraps err with ErrUnavailable when it says etcd could not be reached or did
// not answer in time, naming the endpoints and, for a timeout, the request timeout, and
// adding why a TLS connection fails if it does: the etcd client reports that only as a
// timeout.
func (c *Conn) Classify(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if !errors.Is(Unavailable(err), ErrUnavailable) {
		return err
	}
	where := strings.Join(c.cc.Endpoints, ", ")
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		err = fmt.Errorf("%w at %s: no answer within %s (request_timeout): %w", ErrUnavailable, where, c.timeout, err)
	} else {
		err = fmt.Errorf("%w at %s: %w", ErrUnavailable, where, err)
	}
	if c.cc.TLS != nil {
		if why := c.tlsProblem(); why != nil {
			return fmt.Errorf("%w (TLS: %v)", err, why)
		}
	}
	return err
}

// tlsProblem connects to the first endpoint as the client would and returns why the
// TLS handshake fails (unknown authority, certificate required…), or nil if it does
// not fail or the endpoint cannot be reached at all.
func (c *Conn) tlsProblem() error {
	ep := c.cc.Endpoints[0]
	if _, host, ok := strings.Cut(ep, "://"); ok {
		ep = host
	}
	cfg := c.cc.TLS.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(ep)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", ep, cfg)
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return nil // not listening: no TLS problem to speak of
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	// With TLS 1.3 the server refuses a client certificate after the handshake.
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Unavailable wraps err with ErrUnavailable when it says etcd could not be reached or
// did not answer in time.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, rpctypes.ErrNoLeader),
		errors.Is(err, rpctypes.ErrLeaderChanged),
		errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost),
		errors.Is(err, rpctypes.ErrStopped),
		errors.Is(err, rpctypes.ErrNotCapable):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
