package ansible

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/pushdeploy/pushdeploy/notify"
)

// notifyTarget is a webhook notification target in the lab: it records the events whose
// signature (X-Pushdeploy-Signature-256) is right for secret, and fails the test on others.
type notifyTarget struct {
	t      testing.TB
	secret []byte
	srv    *httptest.Server

	mu     sync.Mutex
	events []notify.Event
}

func newNotifyTarget(t testing.TB, ln net.Listener, secret string) *notifyTarget {
	n := &notifyTarget{t: t, secret: []byte(secret)}
	n.srv = serveOn(t, ln, n)
	return n
}

// URL is the target's URL, as the agents post to it.
func (n *notifyTarget) URL() string {
	return "http://" + n.srv.Listener.Addr().String() + "/pushdeploy"
}

func (n *notifyTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if got, want := r.Header.Get(notify.SignatureHeader), notify.Sign(n.secret, body); got != want {
		n.t.Errorf("notification %s: signature %q, want %q (signed with the role's notify secret)", body, got, want)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev notify.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		n.t.Errorf("notification %s: %v", body, err)
		return
	}
	n.mu.Lock()
	n.events = append(n.events, ev)
	n.mu.Unlock()
}

// received returns the events received so far.
func (n *notifyTarget) received() []notify.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]notify.Event(nil), n.events...)
}
