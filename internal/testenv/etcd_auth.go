package testenv

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// StartEtcdAuth is StartEtcd with authentication enabled: a root user, and user with
// password granted readwrite on the keys under prefix and nothing else. Passwords are
// hashed at bcrypt's lowest cost: at etcd's default every login takes about 50ms, over
// half a second under the race detector, and clientv3 logs in again for every watch.
func StartEtcdAuth(t testing.TB, user, password, prefix string) *Etcd {
	t.Helper()
	e := StartEtcdWith(t, func(c *embed.Config) { c.BcryptCost = 4 /* bcrypt.MinCost */ })
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("connect to etcd: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	const role = "test-readwrite"
	steps := []struct {
		what string
		do   func() error
	}{
		{"add user root", func() error { _, err := c.UserAdd(ctx, "root", "root-"+password); return err }},
		{"grant root the root role", func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role " + role, func() error { _, err := c.RoleAdd(ctx, role); return err }},
		{"grant " + role + " readwrite on " + prefix, func() error {
			_, err := c.RoleGrantPermission(ctx, role, prefix, clientv3.GetPrefixRangeEnd(prefix),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"add user " + user, func() error { _, err := c.UserAdd(ctx, user, password); return err }},
		{"grant " + user + " " + role, func() error { _, err := c.UserGrantRole(ctx, user, role); return err }},
		{"enable auth", func() error { _, err := c.AuthEnable(ctx); return err }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("etcd auth: %s: %v", s.what, err)
		}
	}
	return e
}
