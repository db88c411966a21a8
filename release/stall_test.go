package release_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/release"
)

// stallingGit accepts git:// connections and never answers, as a wedged git server does:
// a real one cannot be made to stall on demand.
func stallingGit(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "git://" + ln.Addr().String() + "/acme/web.git"
}

// stallingHTTP answers git's smart HTTP requests with nothing until the test ends.
func stallingHTTP(t *testing.T) string {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL + "/acme/web.git"
}

// TestRemote_timeout: a server that accepts and then stalls ends each exchange after the
// remote's timeout, with an error that names the remote and the timeout; a caller's own
// cancellation (a shutdown) stays a cancellation.
func TestRemote_timeout(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	for _, srv := range []struct {
		name  string
		start func(*testing.T) string
	}{{"git-daemon", stallingGit}, {"http", stallingHTTP}} {
		t.Run(srv.name, func(t *testing.T) {
			url := srv.start(t)
			remote := release.Remote{URL: url, Timeout: 300 * time.Millisecond}
			c, err := release.OpenCache(t.TempDir()+"/cache.git", remote)
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range []struct {
				name, want string
				do         func(context.Context) error
			}{
				{"fetch", "fetch 0123456789ab from " + url, func(ctx context.Context) error { _, err := c.Fetch(ctx, sha, "main"); return err }},
				{"tip", "list refs of " + url, func(ctx context.Context) error { _, err := c.Tip(ctx, "main"); return err }},
				{"move branch", "list refs of " + url, func(ctx context.Context) error {
					_, err := remote.MoveBranch(ctx, sha, "staging", "production", false)
					return err
				}},
			} {
				err := op.do(t.Context())
				want := op.want + ": timed out: no complete answer within 300ms (fetch_timeout)"
				if !errors.Is(err, release.ErrTimeout) || err.Error() != want {
					t.Errorf("%s: got %v, want %q wrapping ErrTimeout", op.name, err, want)
				}
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(50*time.Millisecond, cancel)
				if err := op.do(ctx); errors.Is(err, release.ErrTimeout) || err == nil || strings.Contains(err.Error(), "fetch_timeout") {
					t.Errorf("%s cancelled by its caller: got %v, want the cancellation, not a timeout", op.name, err)
				}
			}
		})
	}
}
