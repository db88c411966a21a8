package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread that entered the lab's network namespace: a socket fn
// creates lives there for good, whatever thread uses it later. The thread goes back to
// its own namespace and is unlocked before other goroutines may use it. Letting it end
// with the goroutine instead is not enough: the runtime parks the main thread for good
// rather than ending it, and that thread then kept a closed lab's namespace alive (and
// made /proc/self/ns/net name it).
func (l *Lab) inNetns(fn func() error) error {
	errc := make(chan error, 1)
	go func() { // waited for through errc
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer own.Close()
		if err := unix.Setns(int(l.netns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter lab network namespace: %w", err)
			return
		}
		err = fn()
		if rerr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); rerr != nil {
			// Stay locked: the runtime ends the thread rather than reuse it.
			errc <- errors.Join(err, fmt.Errorf("leave lab network namespace: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// Listen listens in the lab's network namespace (net.Listen's arguments), for a server in
// the test process that the hosts reach: an httptest.Server given this listener, on
// BridgeIP. The caller closes it; an open socket keeps the namespace alive.
func (l *Lab) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := l.inNetns(func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// DialContext connects from the lab's network namespace, as a program started with
// Command would: to a host's address, or to a server listening on BridgeIP.
func (l *Lab) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := l.inNetns(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// HTTPClient returns a client whose requests leave from the lab's network namespace
// (DialContext): http://<host IP>:<port>/ reaches a host's server. It uses no proxy and
// keeps no connection open once a response body is closed.
func (l *Lab) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: l.DialContext, DisableKeepAlives: true},
	}
}
