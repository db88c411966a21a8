package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrLocked is returned by SetLock when the app is locked already.
var ErrLocked = errors.New("already locked")

// Snapshot is the whole fleet at one etcd revision.
type Snapshot struct {
	Rev int64
	// Hosts are every host that registered and was not forgotten, live or not (Alive),
	// sorted by environment and name.
	Hosts []*Host
	Halts []Halt
	Locks []Lock
	// Slots are the hosts holding or queued for a slot, per "app/env", in slot order.
	Slots map[string][]string
}

// Read reads the whole fleet in one round trip.
func (s *Store) Read(ctx context.Context) (*Snapshot, error) {
	resp, err := s.conn.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read fleet from etcd: %w", err)
	}
	snap := &Snapshot{Rev: resp.Header.Revision, Slots: map[string][]string{}}
	alive := map[string]bool{}
	seen := map[string]*Host{}
	var slots []*mvccpb.KeyValue
	for _, kv := range resp.Kvs {
		parts := strings.Split(strings.TrimPrefix(string(kv.Key), s.prefix), "/")
		switch {
		case len(parts) == 3 && parts[0] == "hosts":
			alive[parts[1]+"/"+parts[2]] = true
		case len(parts) == 3 && parts[0] == "seen":
			var h Host
			if json.Unmarshal(kv.Value, &h) == nil {
				h.Env, h.Host = parts[1], parts[2]
				seen[parts[1]+"/"+parts[2]] = &h
			}
		case len(parts) == 5 && parts[0] == "apps" && parts[3] == "halt":
			var h Halt
			json.Unmarshal(kv.Value, &h)
			h.App, h.Env, h.SHA = parts[1], parts[2], parts[4]
			snap.Halts = append(snap.Halts, h)
		case len(parts) == 4 && parts[0] == "apps" && parts[3] == "lock":
			var l Lock
			json.Unmarshal(kv.Value, &l)
			l.App, l.Env = parts[1], parts[2]
			snap.Locks = append(snap.Locks, l)
		case len(parts) == 5 && parts[0] == "apps" && parts[3] == "slot":
			slots = append(slots, kv)
		}
	}
	for key, h := range seen {
		h.Alive = alive[key]
		snap.Hosts = append(snap.Hosts, h)
	}
	sort.Slice(snap.Hosts, func(i, j int) bool {
		a, b := snap.Hosts[i], snap.Hosts[j]
		return a.Env < b.Env || a.Env == b.Env && a.Host < b.Host
	})
	sort.Slice(slots, func(i, j int) bool { return slots[i].CreateRevision < slots[j].CreateRevision })
	for _, kv := range slots {
		parts := strings.Split(strings.TrimPrefix(string(kv.Key), s.prefix), "/")
		k := parts[1] + "/" + parts[2]
		snap.Slots[k] = append(snap.Slots[k], parts[4])
	}
	return snap, nil
}

// hosts returns the registry entries of env (every environment when env is ""): the
// live ones, or with all every one, live or not.
func (s *Store) hosts(ctx context.Context, env string, liveOnly bool) ([]*Host, error) {
	prefix := s.prefix + "seen/"
	if liveOnly {
		prefix = s.prefix + "hosts/"
	}
	if env != "" {
		prefix += env + "/"
	}
	resp, err := s.conn.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read hosts from etcd: %w", err)
	}
	var out []*Host
	for _, kv := range resp.Kvs {
		var h Host
		if json.Unmarshal(kv.Value, &h) == nil {
			h.Alive = liveOnly
			out = append(out, &h)
		}
	}
	return out, nil
}

// Check says whether app is locked in env and whether sha is halted, in one round trip.
func (s *Store) Check(ctx context.Context, app, env, sha string) (*Lock, *Halt, error) {
	if err := checkNames("app", app, "env", env, "sha", sha); err != nil {
		return nil, nil, err
	}
	resp, err := s.conn.Txn(ctx, nil, []clientv3.Op{
		clientv3.OpGet(s.lockKey(app, env)), clientv3.OpGet(s.haltPrefix(app, env) + sha),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read lock and halt of %s/%s: %w", app, env, err)
	}
	var lock *Lock
	var halt *Halt
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		lock = &Lock{App: app, Env: env}
		json.Unmarshal(kvs[0].Value, lock)
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		halt = &Halt{App: app, Env: env, SHA: sha}
		json.Unmarshal(kvs[0].Value, halt)
	}
	return lock, halt, nil
}

// SetLock locks app's deploys in env. If it is locked already, it returns that lock and an
// error wrapping ErrLocked: unlock first.
func (s *Store) SetLock(ctx context.Context, app, env string, l Lock) (*Lock, error) {
	if err := checkNames("app", app, "env", env); err != nil {
		return nil, err
	}
	key := s.lockKey(app, env)
	resp, err := s.conn.Txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, mustJSON(l))}, clientv3.OpGet(key))
	if err != nil {
		return nil, fmt.Errorf("lock %s/%s: %w", app, env, err)
	}
	if resp.Succeeded {
		return nil, nil
	}
	held := &Lock{App: app, Env: env}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		json.Unmarshal(kvs[0].Value, held)
	}
	return held, fmt.Errorf("lock %s/%s: %w %s", app, env, ErrLocked, held)
}

// Unlock removes the lock of app in env and returns it; nil when it was not locked.
func (s *Store) Unlock(ctx context.Context, app, env string) (*Lock, error) {
	if err := checkNames("app", app, "env", env); err != nil {
		return nil, err
	}
	kvs, err := s.delPrev(ctx, s.lockKey(app, env))
	if err != nil || len(kvs) == 0 {
		return nil, err
	}
	l := &Lock{App: app, Env: env}
	json.Unmarshal(kvs[0].Value, l)
	return l, nil
}

// GetLock returns the lock of app in env, nil when it is not locked.
func (s *Store) GetLock(ctx context.Context, app, env string) (*Lock, error) {
	if err := checkNames("app", app, "env", env); err != nil {
		return nil, err
	}
	resp, err := s.conn.Get(ctx, s.lockKey(app, env))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	l := &Lock{App: app, Env: env}
	json.Unmarshal(resp.Kvs[0].Value, l)
	return l, nil
}

// Resume clears every halt of app in env and returns the halts it cleared.
func (s *Store) Resume(ctx context.Context, app, env string) ([]Halt, error) {
	if err := checkNames("app", app, "env", env); err != nil {
		return nil, err
	}
	kvs, err := s.delPrev(ctx, s.haltPrefix(app, env), clientv3.WithPrefix())
	var out []Halt
	for _, kv := range kvs {
		h := Halt{App: app, Env: env}
		json.Unmarshal(kv.Value, &h)
		h.SHA = hostOf(kv)
		out = append(out, h)
	}
	return out, err
}

// Forget removes what an unreachable host last said from the registry (a host taken out
// of service). A live host cannot be forgotten.
func (s *Store) Forget(ctx context.Context, env, host string) error {
	if err := checkNames("env", env, "host", host); err != nil {
		return err
	}
	resp, err := s.conn.Txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.hostKey(env, host)), "=", 0)},
		[]clientv3.Op{clientv3.OpDelete(s.seenKey(env, host))})
	if err != nil {
		return fmt.Errorf("forget %s/%s: %w", env, host, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("forget %s/%s: the host is live: stop its agent first", env, host)
	}
	return nil
}

// delPrev deletes key (with opts) and returns what it deleted.
func (s *Store) delPrev(ctx context.Context, key string, opts ...clientv3.OpOption) ([]*mvccpb.KeyValue, error) {
	resp, err := s.conn.Delete(ctx, key, append(opts, clientv3.WithPrevKV())...)
	if err != nil {
		return nil, err
	}
	return resp.PrevKvs, nil
}
