package testenv

import (
	"net"
	"net/http"
	"testing"
)

// GitHTTP serves every repository under root with `git http-backend` (smart HTTP, fetch
// only, as the package-level GitHTTP) on the lab's BridgeIP, where the hosts reach it, and
// returns the base URL "http://10.77.0.1:N/". The server is closed in t.Cleanup.
func (l *Lab) GitHTTP(t testing.TB, root string) string {
	t.Helper()
	listen := func() (net.Listener, error) { return l.Listen("tcp", l.BridgeIP.String()+":0") }
	return serveGitHTTPOn(t, root, listen, func(h http.Handler) http.Handler { return h })
}
