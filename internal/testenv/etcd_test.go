package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestEtcd(t *testing.T) {
	tests := []struct {
		name  string
		start func(testing.TB) *Etcd
	}{
		{"embedded", StartEtcd},
		{"tls", StartEtcdTLS},
		{"binary", StartEtcdServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr string
			var pgid int
			t.Run("serve", func(t *testing.T) {
				e := tt.start(t)
				u, err := url.Parse(e.Endpoints[0])
				if err != nil {
					t.Fatal(err)
				}
				addr, pgid = u.Host, e.pgid
				c := etcdClient(t, e)
				put(t, c, "k", "v1")
				e.Stop()
				if listening(addr) {
					t.Errorf("%s still accepts connections after Stop", addr)
				}
				e.Start(t)
				if got := get(t, c, "k"); got != "v1" {
					t.Errorf("after restart, k = %q, want v1", got)
				}
			})
			if listening(addr) {
				t.Errorf("%s still accepts connections after cleanup", addr)
			}
			if pgid != 0 && groupAlive(pgid) {
				t.Errorf("process group %d still alive after cleanup", pgid)
			}
		})
	}
}

func etcdClient(t *testing.T, e *Etcd) *clientv3.Client {
	t.Helper()
	cfg := clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if e.CACert != "" {
		pem, err := os.ReadFile(e.CACert)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		cert, err := tls.LoadX509KeyPair(e.Cert, e.Key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func put(t *testing.T, c *clientv3.Client, k, v string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, k, v); err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
}

func get(t *testing.T, c *clientv3.Client, k string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, k)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err == nil
}
