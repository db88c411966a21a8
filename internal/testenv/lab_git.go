package testenv

import (
	"net/http"
	"testing"
)

// GitHTTP serves every repository under root with `git http-backend` (smart HTTP, fetch
// only, as GitHTTP) on BridgeIP, inside the lab's network namespace, and returns the base
// URL "http://10.77.0.1:N/" the lab's hosts fetch from: a repository root/acme/web.git is
// at base+"acme/web.git". The test process serves it (git http-backend runs on the
// machine), so hosts need no git. The server is closed in t.Cleanup.
func (l *Lab) GitHTTP(t testing.TB, root string) string {
	t.Helper()
	needGit(t)
	ln, err := l.Listen("tcp", l.BridgeIP.String()+":0")
	if err != nil {
		t.Fatalf("listen in the lab on %s: %v", l.BridgeIP, err)
	}
	return serveGitHTTPOn(t, root, ln, func(h http.Handler) http.Handler { return h })
}
