package notify

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
)

// received is what a test target got.
type received struct {
	mu     sync.Mutex
	bodies [][]byte
	heads  []http.Header
	got    chan struct{}
}

func newReceived() *received { return &received{got: make(chan struct{}, 100)} }

func (r *received) handler(status func(n int) int) http.Handler {
	var calls atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		n := int(calls.Add(1))
		code := status(n)
		if code < 300 {
			r.mu.Lock()
			r.bodies = append(r.bodies, body)
			r.heads = append(r.heads, req.Header.Clone())
			r.mu.Unlock()
			r.got <- struct{}{}
		}
		w.WriteHeader(code)
	})
}

func (r *received) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("target did not receive %d notifications", n)
		}
	}
}

func fast(n *Notifier) *Notifier {
	n.Backoff, n.MaxBackoff, n.Timeout = 10*time.Millisecond, 40*time.Millisecond, 300*time.Millisecond
	return n
}

// run starts n and returns a func that closes it and waits for Run.
func run(t *testing.T, n *Notifier) func() {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); n.Run(t.Context()) }()
	stop := sync.OnceFunc(func() { n.Close(); <-done })
	t.Cleanup(stop)
	return stop
}

var ev = Event{Event: EventSucceeded, App: "web", Host: "web-1", Deploy: "20250101-120000.000-abcdef", Kind: "deploy",
	SHA: strings.Repeat("ab", 20), Branch: "deploy-production", Status: "succeeded", URL: "https://deploy.example.com/deploys/x", Took: 4.2}

func TestNotifier_webhookSigned(t *testing.T) {
	r := newReceived()
	srv := httptest.NewServer(r.handler(func(int) int { return 200 }))
	defer srv.Close()
	secret := []byte("hook-secret")
	n := fast(New(zerolog.Nop(), []Target{{URL: srv.URL + "/hook", Secret: secret, Events: []string{EventSucceeded}}}))
	stop := run(t, n)
	n.Send(ev)
	n.Send(Event{Event: EventStarted, App: "web"}) // not asked for
	r.wait(t, 1)
	stop()
	if len(r.bodies) != 1 {
		t.Fatalf("got %d notifications, want 1", len(r.bodies))
	}
	if got, want := r.heads[0].Get(SignatureHeader), Sign(secret, r.bodies[0]); got != want || !strings.HasPrefix(got, "sha256=") {
		t.Errorf("%s: got %q, want %q", SignatureHeader, got, want)
	}
	if got := r.heads[0].Get("X-Pushdeploy-Event"); got != EventSucceeded {
		t.Errorf("X-Pushdeploy-Event: got %q", got)
	}
	var got Event
	if err := json.Unmarshal(r.bodies[0], &got); err != nil || got.Deploy != ev.Deploy || got.SHA != ev.SHA || got.Event != EventSucceeded {
		t.Errorf("body: got %+v, %v", got, err)
	}
	if strings.Contains(string(r.bodies[0]), string(secret)) {
		t.Errorf("the secret is in the message: %s", r.bodies[0])
	}
}

func TestNotifier_slack(t *testing.T) {
	r := newReceived()
	srv := httptest.NewServer(r.handler(func(int) int { return 200 }))
	defer srv.Close()
	n := fast(New(zerolog.Nop(), []Target{{URL: srv.URL + "/services/T0/B0/SECRETPATH", Slack: true, Events: []string{EventFailed}}}))
	run(t, n)
	failed := ev
	failed.Event, failed.Error = EventReverted, "web@1: check http /healthz: 500 <html>"
	n.Send(failed)
	r.wait(t, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	var msg map[string]string
	if err := json.Unmarshal(r.bodies[0], &msg); err != nil {
		t.Fatal(err)
	}
	want := "↩️ web on web-1: deploy of abababababab (deploy-production) failed and was reverted in 4.2s: web@1: check http /healthz: 500 &lt;html&gt; · <https://deploy.example.com/deploys/x|log>"
	if msg["text"] != want || len(msg) != 1 {
		t.Errorf("slack message:\ngot  %q\nwant %q", msg["text"], want)
	}
	if r.heads[0].Get(SignatureHeader) != "" {
		t.Errorf("slack target got a signature header")
	}
}

// TestNotifier_badTargets checks that slow, failing and dead targets never hold up Send, are
// retried with backoff while that can help, and that what cannot be sent is dropped with a
// log line that never shows a URL's path.
func TestNotifier_badTargets(t *testing.T) {
	ok := newReceived()
	good := httptest.NewServer(ok.handler(func(int) int { return 200 }))
	defer good.Close()
	flaky := newReceived()
	flakySrv := httptest.NewServer(flaky.handler(func(n int) int {
		if n < 3 {
			return 500
		}
		return 200
	}))
	defer flakySrv.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer broken.Close()
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) }))
	defer gone.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	all := []string{EventSucceeded}
	var logs syncbuf.Buffer
	n := fast(New(zerolog.New(&logs), []Target{
		{URL: good.URL, Events: all},
		{URL: flakySrv.URL, Events: all},
		{URL: broken.URL + "/secret-path", Events: all},
		{URL: gone.URL, Events: all},
		{URL: slow.URL, Events: all},
		{URL: deadURL + "/secret-path", Events: all},
	}))
	n.Queue = 2
	n.Attempts = 3
	stop := run(t, n)
	start := time.Now()
	for range 5 {
		n.Send(ev)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("Send took %v with bad targets: it must never wait for them", took)
	}
	ok.wait(t, 2) // the queue of 2 took the rest… at least 2 arrive
	flaky.wait(t, 1)
	stop()
	out := logs.String()
	for _, want := range []string{"notification dropped: queue full", "notification dropped", "answered 500", "answered 404", "connection refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret-path") {
		t.Errorf("log shows a target's path:\n%s", out)
	}
	if strings.Count(out, `"attempts":1,`) < 1 {
		t.Errorf("the 404 target was retried; want it dropped after one attempt:\n%s", out)
	}
}
