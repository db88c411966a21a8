package renv

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrUnavailable is wrapped by the errors of calls that failed because etcd could not be
// reached or did not answer in time.
var ErrUnavailable = errors.New("etcd unavailable")

// updateAttempts is how often Update reads and tries to write before giving up on a
// document other writers keep changing.
const updateAttempts = 5

func (s *Store) op(name string) {
	if s.onRequest != nil {
		s.onRequest(name)
	}
}

// DocPrefix returns the etcd key prefix of app/env's document: Prefix + app + "/" + env + "/".
func (s *Store) DocPrefix(app, env string) string { return s.prefix + app + "/" + env + "/" }

var docName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func checkName(what, name string) error {
	if !docName.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%s %q: want letters, digits, '.', '_' and '-', and not \".\" or \"..\"", what, name)
	}
	return nil
}

func checkDoc(app, env string) error {
	if err := checkName("app", app); err != nil {
		return err
	}
	return checkName("env", env)
}

// Get returns app/env's document and the etcd revision it was read at, in one round
// trip. A document without keys is empty, not an error. A value that is not JSON (one
// written by hand with etcdctl) reads as a JSON string.
func (s *Store) Get(ctx context.Context, app, env string) (Leaves, int64, error) {
	if err := checkDoc(app, env); err != nil {
		return nil, 0, fmt.Errorf("read config: %w", err)
	}
	l, rev, _, err := s.read(ctx, s.DocPrefix(app, env), 0)
	if err != nil {
		return nil, 0, fmt.Errorf("read config %s/%s from etcd: %w", app, env, err)
	}
	return l, rev, nil
}

// read reads every key under prefix at rev (0: the latest) and returns the leaves, the
// revision, and each leaf's create revision.
func (s *Store) read(ctx context.Context, prefix string, rev int64) (Leaves, int64, map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	c, err := s.etcd(ctx)
	if err != nil {
		return nil, 0, nil, err
	}
	s.op("get")
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return nil, 0, nil, s.classify(err)
	}
	l, created := Leaves{}, make(map[string]int64, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if k := strings.TrimPrefix(string(kv.Key), prefix); k != "" {
			l[k], created[k] = leafValue(kv.Value), kv.CreateRevision
		}
	}
	return l, resp.Header.Revision, created, nil
}

// leafValue returns a stored value as compact JSON; a value that is not JSON becomes a
// JSON string.
func leafValue(v []byte) json.RawMessage {
	var b bytes.Buffer
	if json.Valid(v) && json.Compact(&b, v) == nil {
		return b.Bytes()
	}
	s, _ := json.Marshal(string(v))
	return s
}

// Update changes app/env's document in one transaction: it reads the document, calls
// change on a copy, and writes the difference (puts of new and changed leaves, deletes
// of removed ones, nothing else) guarded so that it applies only if no key under the
// document's prefix was written since the read and no key it rewrites or deletes was
// deleted since. It returns the new document and the revision it was written at.
//
// Outcomes:
//   - change leaves the document equal: nothing is written; the read revision is returned;
//   - another writer changed the document in between: Update reads again and calls change
//     again, up to 5 times, then fails saying another writer kept changing it;
//   - change fails: its error, wrapped with the document's name, and nothing is written;
//   - more changes than etcd allows in one transaction (--max-txn-ops): an error saying so;
//   - etcd unreachable: an error wrapping ErrUnavailable.
func (s *Store) Update(ctx context.Context, app, env string, change func(Leaves) error) (Leaves, int64, error) {
	if err := checkDoc(app, env); err != nil {
		return nil, 0, fmt.Errorf("update config: %w", err)
	}
	prefix := s.DocPrefix(app, env)
	for range updateAttempts {
		old, rev, created, err := s.read(ctx, prefix, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("read config %s/%s from etcd: %w", app, env, err)
		}
		next := old.Clone()
		if err := change(next); err != nil {
			return nil, 0, fmt.Errorf("change config %s/%s: %w", app, env, err)
		}
		if next.Equal(old) {
			return next, rev, nil
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(prefix), "<", rev+1).WithPrefix()}
		var ops []clientv3.Op
		for _, k := range next.Keys() {
			if v, ok := old[k]; !ok || !bytes.Equal(v, next[k]) {
				ops = append(ops, clientv3.OpPut(prefix+k, string(next[k])))
				if ok {
					cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(prefix+k), "=", created[k]))
				}
			}
		}
		for _, k := range old.Keys() {
			if _, ok := next[k]; !ok {
				ops = append(ops, clientv3.OpDelete(prefix+k))
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(prefix+k), "=", created[k]))
			}
		}
		ok, wrev, err := s.txn(ctx, cmps, ops)
		if errors.Is(err, rpctypes.ErrTooManyOps) {
			return nil, 0, fmt.Errorf("write %d changes to %s/%s in one transaction: etcd allows fewer per transaction (server flag --max-txn-ops, default 128)", len(ops), app, env)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("write config %s/%s to etcd: %w", app, env, err)
		}
		if ok {
			return next, wrev, nil
		}
	}
	return nil, 0, fmt.Errorf("update config %s/%s: another writer kept changing it (%d attempts)", app, env, updateAttempts)
}

// txn commits If(cmps).Then(ops) and reports whether it applied and at which revision.
func (s *Store) txn(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op) (bool, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	c, err := s.etcd(ctx)
	if err != nil {
		return false, 0, err
	}
	s.op("txn")
	resp, err := c.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, 0, s.classify(err)
	}
	return resp.Succeeded, resp.Header.Revision, nil
}

// Nuke deletes every key of app/env's document, or with env "" of every environment of
// app, in one request, and returns how many keys it deleted.
func (s *Store) Nuke(ctx context.Context, app, env string) (int64, error) {
	prefix, name := s.prefix+app+"/", app
	if env != "" {
		prefix, name = s.DocPrefix(app, env), app+"/"+env
	}
	if err := checkName("app", app); err != nil {
		return 0, fmt.Errorf("delete config: %w", err)
	}
	if err := checkName("env", env); env != "" && err != nil {
		return 0, fmt.Errorf("delete config: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	c, err := s.etcd(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete config %s from etcd: %w", name, err)
	}
	s.op("delete")
	resp, err := c.Delete(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("delete config %s from etcd: %w", name, s.classify(err))
	}
	return resp.Deleted, nil
}

// Dump reads every document under the prefix at one revision: app → env → leaves. Keys
// that are not <app>/<env>/<leaf> with valid names are skipped.
func (s *Store) Dump(ctx context.Context) (map[string]map[string]Leaves, int64, error) {
	all, rev, _, err := s.read(ctx, s.prefix, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("read all config from etcd: %w", err)
	}
	docs := map[string]map[string]Leaves{}
	for k, v := range all {
		parts := strings.SplitN(k, "/", 3)
		if len(parts) != 3 || parts[2] == "" || checkDoc(parts[0], parts[1]) != nil {
			continue
		}
		app, env, leaf := parts[0], parts[1], parts[2]
		if docs[app] == nil {
			docs[app] = map[string]Leaves{}
		}
		if docs[app][env] == nil {
			docs[app][env] = Leaves{}
		}
		docs[app][env][leaf] = v
	}
	return docs, rev, nil
}

// classify wraps err with ErrUnavailable when it says etcd could not be reached or did
// not answer in time, adding why a TLS connection fails if it does: the etcd client
// reports that only as a timeout.
func (s *Store) classify(err error) error {
	err = unavailable(err)
	if errors.Is(err, ErrUnavailable) && s.cc.TLS != nil {
		if why := s.tlsProblem(); why != nil {
			return fmt.Errorf("%w (TLS: %v)", err, why)
		}
	}
	return err
}

// tlsProblem connects to the first endpoint as the client would and returns why the
// TLS handshake fails (unknown authority, certificate required…), or nil if it does
// not fail or the endpoint cannot be reached at all.
func (s *Store) tlsProblem() error {
	ep := s.cc.Endpoints[0]
	if _, host, ok := strings.Cut(ep, "://"); ok {
		ep = host
	}
	cfg := s.cc.TLS.Clone()
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

// unavailable wraps err with ErrUnavailable when it says etcd could not be reached or
// did not answer in time.
func unavailable(err error) error {
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
