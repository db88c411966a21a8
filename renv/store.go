package renv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
)

// ErrUnavailable is wrapped by the errors of calls that failed because etcd could not be
// reached or did not answer in time (etcdconn's: one sentinel for every etcd user).
var ErrUnavailable = etcdconn.ErrUnavailable

// updateAttempts is how often Update reads and tries to write before giving up on a
// document other writers keep changing.
const updateAttempts = 5

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
	resp, err := s.conn.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return nil, 0, nil, err
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
	resp, err := s.conn.Txn(ctx, cmps, ops)
	if err != nil {
		return false, 0, err
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
	resp, err := s.conn.Delete(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("delete config %s from etcd: %w", name, err)
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
