package renv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Credentials startAuthEtcd sets up: deployer may read and write DefaultPrefix and nothing
// else. The passwords are unusual strings so that a test can look for them in errors.
const (
	authUser     = "deployer"
	authPassword = "pw-Kx7q2Zs9"
)

// startAuthEtcd starts an etcd where authUser may read and write DefaultPrefix only.
func startAuthEtcd(t *testing.T) *testenv.Etcd {
	t.Helper()
	return testenv.StartEtcdAuth(t, authUser, authPassword, DefaultPrefix)
}

// authStore opens a Store on e as authUser with password, closed in t.Cleanup.
func authStore(t testing.TB, e *testenv.Etcd, password string, edit func(*Config)) *Store {
	t.Helper()
	return openStore(t, e, func(c *Config) {
		c.Username, c.Password = authUser, password
		if edit != nil {
			edit(c)
		}
	})
}

func TestStore_AuthGetUpdateWatch(t *testing.T) {
	t.Parallel()
	e := startAuthEtcd(t)
	// Every new watch stream logs in again (clientv3 does, for fresh tokens): the
	// watch's request timeout must cover a bcrypt check on the server.
	s := authStore(t, e, authPassword, func(c *Config) { c.RequestTimeout = time.Second })

	want := leaves("a", `1`, "db/host", `"db1"`)
	rev := put(t, s, "web", "production", want)
	got, grev := mustGet(t, s, "web", "production")
	if !got.Equal(want) || grev != rev {
		t.Errorf("Get: got %s at %d, want %s at %d", got.Document(), grev, want.Document(), rev)
	}
	all, _, err := s.Dump(context.Background())
	if err != nil || !all["web"]["production"].Equal(want) {
		t.Errorf("Dump: got %v, %v, want web/production %s", all, err, want.Document())
	}

	w := startWatch(t, s, "web", "production", Snapshot{}, nil)
	expect(t, w.next(t), want, rev)
	next := leaves("a", `2`)
	rev = put(t, s, "web", "production", next)
	expect(t, w.next(t), next, rev)
	w.quiet(t)
	w.stop()
	if len(w.errs) != 0 {
		t.Errorf("onErr called with %v on a healthy etcd", <-w.errs)
	}

	if n, err := s.Nuke(context.Background(), "web", "production"); err != nil || n != 1 {
		t.Errorf("Nuke: got %d, %v, want 1 key deleted", n, err)
	}
}

func TestStore_AuthWrongPassword(t *testing.T) {
	t.Parallel()
	e := startAuthEtcd(t)
	const wrong = "wrong-Qp3r8Lw2"
	s := authStore(t, e, wrong, func(c *Config) { c.RequestTimeout = 3 * time.Second })
	tests := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, _, err := s.Get(context.Background(), "web", "production"); return err }},
		{"Update", func() error {
			_, _, err := s.Update(context.Background(), "web", "production", func(l Leaves) error { l["a"] = []byte(`1`); return nil })
			return err
		}},
		{"Nuke", func() error { _, err := s.Nuke(context.Background(), "web", "production"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := tt.call()
			took := time.Since(start)
			t.Logf("%s with a wrong password: %v (%v)", tt.name, err, took)
			if !errors.Is(err, rpctypes.ErrAuthFailed) || !strings.Contains(err.Error(), "authentication failed") {
				t.Errorf("%s: got %v, want an error wrapping rpctypes.ErrAuthFailed saying authentication failed", tt.name, err)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("%s: got %v, want no ErrUnavailable: etcd answered", tt.name, err)
			}
			if err != nil && (strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), authPassword)) {
				t.Errorf("%s: the error shows a password: %v", tt.name, err)
			}
			if took >= 3*time.Second {
				t.Errorf("%s took %v, want less than the 3s request timeout", tt.name, took)
			}
		})
	}

	// Watch keeps trying but tells onErr why, once.
	w := startWatch(t, s, "web", "production", Snapshot{}, nil)
	select {
	case err := <-w.errs:
		if !errors.Is(err, rpctypes.ErrAuthFailed) || strings.Contains(err.Error(), wrong) {
			t.Errorf("Watch's onErr(%v), want an error wrapping rpctypes.ErrAuthFailed without the password", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("Watch's onErr not called within 2s with a wrong password")
	}
	w.quiet(t)
}

// deployer may not touch keys outside DefaultPrefix: a Store with another prefix is
// refused with etcd's permission error, and so is a user without any role.
func TestStore_AuthPermissionDenied(t *testing.T) {
	t.Parallel()
	e := startAuthEtcd(t)
	s := authStore(t, e, authPassword, func(c *Config) { c.Prefix = "/other/" })
	_, _, err := s.Get(context.Background(), "web", "production")
	t.Logf("Get outside the granted prefix: %v", err)
	if !errors.Is(err, rpctypes.ErrPermissionDenied) || !strings.Contains(err.Error(), "permission denied") ||
		!strings.HasPrefix(err.Error(), "read config web/production from etcd: ") {
		t.Errorf("Get outside the granted prefix: got %v, want \"read config web/production from etcd: …permission denied\"", err)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Errorf("Get outside the granted prefix: got %v, want no ErrUnavailable", err)
	}
	_, _, err = s.Update(context.Background(), "web", "production", func(l Leaves) error { l["a"] = []byte(`1`); return nil })
	if !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("Update outside the granted prefix: got %v, want permission denied", err)
	}

	// The granted prefix itself works, and a Dump of it too.
	ok := authStore(t, e, authPassword, nil)
	put(t, ok, "web", "production", leaves("a", `1`))
	if _, _, err := ok.Dump(context.Background()); err != nil {
		t.Errorf("Dump of the granted prefix: %v", err)
	}
}

// Open with credentials does not wait for etcd; calls while etcd is down fail within the
// request timeout wrapping ErrUnavailable, and work once etcd is back.
func TestStore_AuthEtcdDown(t *testing.T) {
	t.Parallel()
	e := startAuthEtcd(t)
	e.Stop()

	start := time.Now()
	// Once etcd is back, the request timeout bounds the login too.
	s := authStore(t, e, authPassword, func(c *Config) { c.RequestTimeout = 500 * time.Millisecond })
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("Open with a username while etcd is down took %v, want no wait", took)
	}
	start = time.Now()
	_, _, err := s.Get(context.Background(), "web", "production")
	took := time.Since(start)
	t.Logf("Get while etcd is down: %v (%v)", err, took)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get while etcd is down: got %v, want an error wrapping ErrUnavailable", err)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("Get while etcd is down took %v, want about the 500ms request timeout", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start = time.Now()
	_, _, err = s.Get(ctx, "web", "production")
	cancel()
	if took := time.Since(start); took > time.Second || err == nil {
		t.Errorf("Get with a 100ms context while etcd is down: %v after %v, want an error within about 100ms", err, took)
	}

	e.Start(t)
	want := leaves("a", `1`)
	rev := updateRetrying(t, s, want)
	if got, grev := mustGet(t, s, "web", "production"); !got.Equal(want) || grev != rev {
		t.Errorf("Get after etcd came back: got %s at %d, want %s at %d", got.Document(), grev, want.Document(), rev)
	}
}
