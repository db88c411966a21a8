package renv

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// openStore opens a Store on e, with a short request timeout, closed in t.Cleanup.
func openStore(t testing.TB, e *testenv.Etcd, edit func(*Config)) *Store {
	t.Helper()
	cfg := Config{Config: etcdconn.Config{Endpoints: e.Endpoints, CACert: e.CACert, Cert: e.Cert, Key: e.Key, RequestTimeout: time.Second}}
	if edit != nil {
		edit(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient is a plain etcd client on e, to look at and change keys behind the Store's back.
func rawClient(t testing.TB, e *testenv.Etcd) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func put(t testing.TB, s *Store, app, env string, l Leaves) int64 {
	t.Helper()
	_, rev, err := s.Update(context.Background(), app, env, func(d Leaves) error {
		clear(d)
		for k, v := range l {
			d[k] = v
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update %s/%s: %v", app, env, err)
	}
	return rev
}

func mustGet(t testing.TB, s *Store, app, env string) (Leaves, int64) {
	t.Helper()
	l, rev, err := s.Get(context.Background(), app, env)
	if err != nil {
		t.Fatalf("Get %s/%s: %v", app, env, err)
	}
	return l, rev
}

var allTypes = Leaves{
	"string": json.RawMessage(`"x"`), "empty": json.RawMessage(`""`),
	"unicode": json.RawMessage(`"héllo ✓ 日本"`), "decimal": json.RawMessage(`1.10`),
	"big": json.RawMessage(`12345678901234567890`), "neg": json.RawMessage(`-3e-7`),
	"yes": json.RawMessage(`true`), "no": json.RawMessage(`false`), "nil": json.RawMessage(`null`),
	"arr": json.RawMessage(`[1,[2,["a",null]],{"b":{}}]`), "emptyarr": json.RawMessage(`[]`),
	"emptyobj": json.RawMessage(`{}`), "nested/deep/leaf": json.RawMessage(`"y"`),
}

func TestStore_GetUpdate(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	s, raw := openStore(t, e, nil), rawClient(t, e)
	ctx := context.Background()

	if l, rev, err := s.Get(ctx, "web", "production"); err != nil || len(l) != 0 || rev == 0 {
		t.Fatalf("Get of a missing document = %v, %d, %v; want empty, a revision, no error", l, rev, err)
	}
	rev := put(t, s, "web", "production", allTypes)
	got, grev := mustGet(t, s, "web", "production")
	if !got.Equal(allTypes) || grev != rev {
		t.Errorf("Get = %s at %d, want %s at %d", got.Document(), grev, allTypes.Document(), rev)
	}
	resp, err := raw.Get(ctx, s.DocPrefix("web", "production"), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), s.DocPrefix("web", "production"))
		if string(kv.Value) != string(allTypes[k]) {
			t.Errorf("etcd value of %s = %s, want %s", k, kv.Value, allTypes[k])
		}
	}
	if len(resp.Kvs) != len(allTypes) {
		t.Errorf("etcd holds %d keys, want %d", len(resp.Kvs), len(allTypes))
	}

	// A value written by hand that is not JSON reads as a string.
	if _, err := raw.Put(ctx, s.DocPrefix("web", "handmade")+"NAME", "hello world"); err != nil {
		t.Fatal(err)
	}
	if l, _ := mustGet(t, s, "web", "handmade"); string(l["NAME"]) != `"hello world"` {
		t.Errorf("non-JSON value reads as %s, want \"hello world\"", l["NAME"])
	}

	// Unchanged: nothing written, the read revision returned.
	_, before := mustGet(t, s, "web", "production")
	l, urev, err := s.Update(ctx, "web", "production", func(Leaves) error { return nil })
	if _, after := mustGet(t, s, "web", "production"); err != nil || urev != before || after != before || !l.Equal(allTypes) {
		t.Errorf("no-op Update = rev %d, %v; etcd revision %d → %d; want nothing written", urev, err, before, after)
	}

	// change's error is returned, wrapped.
	errBoom := errors.New("boom")
	if _, _, err := s.Update(ctx, "web", "production", func(Leaves) error { return errBoom }); !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "web/production") {
		t.Errorf("Update with failing change = %v, want it wrapping boom and naming web/production", err)
	}
}

func TestStore_UpdateAtomic(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	s, raw := openStore(t, e, nil), rawClient(t, e)
	rev := put(t, s, "web", "production", Leaves{"a": json.RawMessage(`1`), "b": json.RawMessage(`2`), "c/d": json.RawMessage(`3`)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := raw.Watch(ctx, s.DocPrefix("web", "production"), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	want := Leaves{"a": json.RawMessage(`10`), "e": json.RawMessage(`"new"`)}
	rev = put(t, s, "web", "production", want)
	resp := <-wch
	puts, deletes := 0, 0
	for _, ev := range resp.Events {
		if ev.Kv.ModRevision != rev {
			t.Errorf("event %s %s at revision %d, want %d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, rev)
		}
		if ev.IsCreate() || ev.IsModify() {
			puts++
		} else {
			deletes++
		}
	}
	if puts != 2 || deletes != 2 {
		t.Errorf("one watch response holds %d puts and %d deletes, want 2 and 2", puts, deletes)
	}
	if got, _ := mustGet(t, s, "web", "production"); !got.Equal(want) {
		t.Errorf("after replace: %s, want %s", got.Document(), want.Document())
	}
}

func TestStore_UpdateConflict(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	s, raw := openStore(t, e, nil), rawClient(t, e)
	calls := 0
	l, _, err := s.Update(context.Background(), "web", "production", func(d Leaves) error {
		if calls++; calls == 1 {
			if _, err := raw.Put(context.Background(), s.DocPrefix("web", "production")+"other", `"theirs"`); err != nil {
				t.Fatal(err)
			}
		}
		d["mine"] = json.RawMessage(`"ours"`)
		return nil
	})
	want := Leaves{"mine": json.RawMessage(`"ours"`), "other": json.RawMessage(`"theirs"`)}
	if err != nil || calls != 2 || !l.Equal(want) {
		t.Fatalf("Update = %s, %v after %d calls; want %s after 2", l.Document(), err, calls, want.Document())
	}
	if got, _ := mustGet(t, s, "web", "production"); !got.Equal(want) {
		t.Errorf("stored %s, want %s", got.Document(), want.Document())
	}

	// A writer that changes the document every time wins; Update gives up.
	n := 0
	_, _, err = s.Update(context.Background(), "web", "production", func(d Leaves) error {
		n++
		raw.Put(context.Background(), s.DocPrefix("web", "production")+"other", `"again"`)
		d["mine"] = json.RawMessage(`"ours again"`)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "another writer kept changing it") || n != 5 {
		t.Errorf("Update against a busy writer = %v after %d calls, want \"another writer kept changing it\" after 5", err, n)
	}
}

func TestStore_UpdateTooManyOps(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcdWith(t, func(c *embed.Config) { c.MaxTxnOps = 4 })
	s := openStore(t, e, nil)
	_, _, err := s.Update(context.Background(), "web", "production", func(d Leaves) error {
		for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
			d[k] = json.RawMessage(`1`)
		}
		return nil
	})
	want := "write 6 changes to web/production in one transaction: etcd allows fewer per transaction (server flag --max-txn-ops, default 128)"
	if err == nil || err.Error() != want {
		t.Errorf("Update = %v, want %q", err, want)
	}
	if l, _ := mustGet(t, s, "web", "production"); len(l) != 0 {
		t.Errorf("after a refused transaction the document is %s, want empty", l.Document())
	}
}

func TestStore_NukeDump(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	s, raw := openStore(t, e, nil), rawClient(t, e)
	ctx := context.Background()
	one := Leaves{"a": json.RawMessage(`1`), "b/c": json.RawMessage(`"x"`)}
	put(t, s, "web", "production", one)
	put(t, s, "web", "staging", one)
	put(t, s, "api", "production", Leaves{"z": json.RawMessage(`null`)})
	for _, k := range []string{"stray", "web/nodoc", "web/bad name/x"} {
		raw.Put(ctx, DefaultPrefix+k, `1`)
	}

	docs, rev, err := s.Dump(ctx)
	if err != nil || rev == 0 || len(docs) != 2 || len(docs["web"]) != 2 || !docs["web"]["staging"].Equal(one) || len(docs["api"]["production"]) != 1 {
		t.Errorf("Dump = %v at %d, %v; want web/{production,staging} and api/production", docs, rev, err)
	}
	if n, err := s.Nuke(ctx, "web", "production"); n != 2 || err != nil {
		t.Errorf("Nuke web/production = %d, %v; want 2 keys", n, err)
	}
	if l, _ := mustGet(t, s, "web", "staging"); !l.Equal(one) {
		t.Errorf("Nuke of web/production touched web/staging: %s", l.Document())
	}
	if n, err := s.Nuke(ctx, "web", ""); n != 4 || err != nil { // staging's 2, nodoc, bad name/x
		t.Errorf("Nuke web = %d, %v; want 4 keys", n, err)
	}
	if l, _ := mustGet(t, s, "api", "production"); len(l) != 1 {
		t.Errorf("Nuke of web touched api: %s", l.Document())
	}
}

func TestStore_BadNames(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	var requests atomic.Int64
	s := openStore(t, e, func(c *Config) { c.OnRequest = func(string) { requests.Add(1) } })
	ctx := context.Background()
	tests := []struct{ app, env, want string }{
		{"", "production", "app"}, {"..", "production", "app"}, {"a/b", "production", "app"},
		{"web", ".", "env"}, {"web", "pro duction", "env"}, {"web", "a/b", "env"},
	}
	for _, tt := range tests {
		calls := map[string]error{"Get": nil, "Update": nil, "Watch": nil}
		_, _, calls["Get"] = s.Get(ctx, tt.app, tt.env)
		_, _, calls["Update"] = s.Update(ctx, tt.app, tt.env, func(Leaves) error { return nil })
		calls["Watch"] = s.Watch(ctx, tt.app, tt.env, Snapshot{}, func(Snapshot) {}, nil)
		if tt.env != "" {
			_, calls["Nuke"] = s.Nuke(ctx, tt.app, tt.env)
		}
		for name, err := range calls {
			if err == nil || !strings.Contains(err.Error(), tt.want+` "`) {
				t.Errorf("%s(%q, %q) = %v, want an error naming the %s", name, tt.app, tt.env, err, tt.want)
			}
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("bad names caused %d requests to etcd, want 0", n)
	}
}

func TestStore_OnRequest(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	var ops []string
	s := openStore(t, e, func(c *Config) { c.OnRequest = func(op string) { ops = append(ops, op) } })
	mustGet(t, s, "web", "production")
	if strings.Join(ops, ",") != "get" {
		t.Errorf("Get made round trips %v, want [get]", ops)
	}
	ops = nil
	put(t, s, "web", "production", Leaves{"a": json.RawMessage(`1`)})
	if strings.Join(ops, ",") != "get,txn" {
		t.Errorf("Update made round trips %v, want [get txn]", ops)
	}
}

func TestStore_TLSAndOutage(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcdTLS(t)
	put(t, openStore(t, e, nil), "web", "production", Leaves{"a": json.RawMessage(`1`)})

	noCert := openStore(t, e, func(c *Config) { c.Cert, c.Key = "", "" })
	_, _, err := noCert.Get(context.Background(), "web", "production")
	t.Logf("without a client certificate: %v", err)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Get without a client certificate = %v, want an error about the certificate", err)
	}

	s := openStore(t, e, func(c *Config) { c.RequestTimeout = 500 * time.Millisecond })
	e.Stop()
	start := time.Now()
	_, _, err = s.Get(context.Background(), "web", "production")
	if !errors.Is(err, ErrUnavailable) || !strings.HasPrefix(err.Error(), "read config web/production from etcd: ") {
		t.Errorf("Get while etcd is down = %v, want \"read config web/production from etcd: …\" wrapping ErrUnavailable", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Get while etcd is down took %v, want about the 500ms request timeout", d)
	}
}
