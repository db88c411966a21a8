package agent

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// floodSize is how hard TestAgent_flood floods: PUSHDEPLOY_STRESS=1 (make stress) five
// times harder than make test.
type floodSize struct {
	requests int // bad requests of the cheap kinds, round robin
	slow     int // slowloris connections, half slow headers, half slow bodies
	big      int // 30 MB bodies of each kind (with and without Content-Length)
	lying    int // bodies shorter than their Content-Length, held open
	workers  int // concurrent senders of the cheap kinds
}

func floodScale() floodSize {
	if os.Getenv("PUSHDEPLOY_STRESS") != "" {
		return floodSize{requests: 100_000, slow: 1000, big: 40, lying: 100, workers: 16}
	}
	return floodSize{requests: 20_000, slow: 200, big: 10, lying: 20, workers: 8}
}

// TestAgent_flood floods the real webhook listener with bad requests of every kind and
// slow clients while a correctly signed push arrives every second, each pushed to a real
// git server and deployed. Every bad request is refused with a 4xx whose JSON names what
// is wrong (never a redirect, a 5xx, a deploy or a queue entry); every real push is
// answered 202 and the last one is live; slow clients are cut by the server's timeouts;
// and goroutines, descriptors and memory come back to where they were.
func TestAgent_flood(t *testing.T) {
	size := floodScale()
	limits := WebLimits{
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      30 * time.Second, // only so that a starved machine still answers
		IdleTimeout:       time.Second,
		MaxHeaderBytes:    64 << 10,
		UnverifiedBodies:  hooks.DefaultBudget,
		UnverifiedRate:    hooks.DefaultBudgetRate,
		BudgetWait:        hooks.DefaultBudgetWait,
	}
	f := newTunedFixture(t, func(c *config.Config) {
		bare := strings.TrimPrefix(c.Apps["web"].Remote, "file://")
		c.Apps["web"].Remote = testenv.GitDaemon(t, strings.TrimSuffix(bare, "/acme/web.git")) + "acme/web.git"
	}, func(a *Agent) {
		a.WebLimits = limits
		// 20,000 "webhook refused" lines would be the test's output (held in memory).
		a.log = newLogger(dropLines{zerolog.NewTestWriter(t), []byte(`"webhook refused"`)}, zerolog.DebugLevel).
			Str("component", "agent").Logger()
	})
	first := f.commit("0")
	if d := f.pushAndDeploy(first); d.Status != state.StatusSucceeded {
		t.Fatalf("first deploy: got %s (%s), want succeeded", d.Status, d.Error)
	}
	before := measure(t)
	t.Logf("before the flood: %s", before)

	addr := f.agent.Addr()
	kinds := badKinds(t, first)
	var tl tally
	var flood sync.WaitGroup
	for i := range size.big {
		for _, k := range kinds.big {
			flood.Go(func() { tl.check(k, k.req(i).send(addr, 2*time.Minute)) })
		}
	}
	for i := range size.lying {
		k := kinds.lying
		flood.Go(func() { tl.check(k, k.req(i).send(addr, time.Minute)) })
	}
	var cutMu sync.Mutex
	var cutAfter []time.Duration
	for i := range size.slow {
		if i%2 == 0 {
			flood.Go(func() {
				took, err := slowHeaders(addr, 100*time.Millisecond, time.Minute)
				cutMu.Lock()
				defer cutMu.Unlock()
				if err != nil {
					tl.fail("slowloris: slow headers: %v", err)
					return
				}
				cutAfter = append(cutAfter, took)
				tl.count("slowloris: slow headers (closed by the server)", 0)
			})
			continue
		}
		k := kinds.slowBody[i/2%len(kinds.slowBody)]
		flood.Go(func() { tl.check(k, k.req(i).send(addr, time.Minute)) })
	}
	jobs := make(chan int)
	for range size.workers {
		flood.Go(func() {
			for i := range jobs {
				k := kinds.cheap[i%len(kinds.cheap)]
				tl.check(k, k.req(i).send(addr, time.Minute))
			}
		})
	}
	done := make(chan struct{})
	go func() {
		for i := range size.requests {
			jobs <- i
		}
		close(jobs)
		flood.Wait()
		close(done)
	}()

	// A real push every second while the flood lasts (at least ten), each on a connection of
	// its own as GitHub sends them: one kept alive would race IdleTimeout (1 s) and could
	// be closed by the server just as the next push is written on it.
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	var lat []time.Duration
	var ids []string
	var last string
	for v := 1; ; v++ {
		tick := time.After(time.Second)
		sha := f.commit(strconv.Itoa(v))
		f.push("deploy-production")
		code, ans, took, err := signedPush(client, f.url, sha)
		switch {
		case err != nil:
			t.Errorf("real push %d: %v", v, err)
		case code != http.StatusAccepted || ans.Status != "queued":
			t.Errorf("real push %d: got %d %+v, want 202 queued", v, code, ans)
		default:
			ids, last = append(ids, ans.Deploy), sha
			lat = append(lat, took)
		}
		<-tick
		select {
		case <-done:
		default:
			continue
		}
		if v >= 10 {
			break
		}
	}
	<-done
	client.CloseIdleConnections()

	tl.report(t)
	// A sender of 30 MB that was refused may lose the answer: the agent reads no more of
	// its body, and once net/http has waited 500 ms (rstAvoidanceDelay) after the answer,
	// closing with its data unread resets the connection, which drops the answer if this
	// starved client had not read it yet. The agent's own count says it did answer.
	var answered float64
	for _, code := range []string{"408", "413", "429"} {
		answered += testutil.ToFloat64(f.agent.metrics.webhooks.WithLabelValues("web", code, "error"))
	}
	if seen, lost := tl.seen(408, 413, 429), tl.lost(kinds.big...); int(answered) < seen+lost {
		t.Errorf("the agent answered %.0f deliveries with 408, 413 or 429; the clients saw %d and lost %d answers to a reset: some were never answered",
			answered, seen, lost)
	}
	slices.Sort(cutAfter)
	if len(cutAfter) > 0 {
		t.Logf("slow headers: %d connections closed by the server after %s to %s (ReadHeaderTimeout %s)",
			len(cutAfter), cutAfter[0].Round(time.Millisecond), cutAfter[len(cutAfter)-1].Round(time.Millisecond), limits.ReadHeaderTimeout)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		t.Logf("real pushes: %d answered 202 during the flood; latency p50 %s, p99 %s, max %s",
			len(lat), lat[len(lat)/2].Round(time.Microsecond), lat[min(len(lat)-1, len(lat)*99/100)].Round(time.Microsecond),
			lat[len(lat)-1].Round(time.Microsecond))
	}

	// The last push is deployed; no bad request made a deploy or a queue entry.
	if d := f.wait(ids[len(ids)-1]); d.Status != state.StatusSucceeded || f.current() != last {
		t.Errorf("last real push: got %s (%s), current %.12s, want succeeded at %.12s", d.Status, d.Error, f.current(), last)
	}
	hist, err := f.agent.state.History("web", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for _, d := range hist {
		if d.SHA == first {
			continue
		}
		if !want[d.ID] {
			t.Errorf("deploy %s of %.12s (%s): not one of the real pushes", d.ID, d.SHA, d.Status)
		}
		if s := d.Status; s != state.StatusSucceeded && s != state.StatusSuperseded && s != state.StatusStale {
			t.Errorf("deploy %s of %.12s: got %s (%s), want succeeded, superseded or stale", d.ID, d.SHA, s, d.Error)
		}
	}
	if len(hist) != len(ids)+1 {
		t.Errorf("got %d deploy records, want %d (the first deploy and the real pushes)", len(hist), len(ids)+1)
	}

	// Idle connections are closed by IdleTimeout; what the flood used is given back.
	after := settle(t, before, 10, 10)
	t.Logf("after the flood: %s", after)
	if grew := after.heap - before.heap; grew > 16<<20 {
		t.Errorf("heap in use grew by %.1f MiB over the flood (%s → %s), want at most 16 MiB", float64(grew)/(1<<20), before, after)
	}
	if grew := after.rss - before.rss; grew > 32<<20 && !raceDetector {
		t.Errorf("RSS grew by %.1f MiB over the flood (%s → %s), want at most 32 MiB", float64(grew)/(1<<20), before, after)
	}
}

// badKinds are the kinds of bad request the flood sends, each with what its answer must
// be. sha is a commit the branch points at, so that a push of it that got through would
// be deployed.
type floodKinds struct {
	cheap    []badKind
	big      []badKind
	lying    badKind
	slowBody []badKind
}

type badKind struct {
	name  string
	req   func(i int) rawRequest
	codes []int  // acceptable statuses, all 4xx
	text  string // the JSON answer's error names this
	lossy bool   // a body the agent refuses unread: its answer may be lost to a reset
}

func badKinds(t *testing.T, sha string) floodKinds {
	t.Helper()
	push, err := hooks.PushPayload(hooks.PushInput{Repo: "acme/web", Ref: "refs/heads/deploy-production",
		Before: strings.Repeat("0", 40), After: sha, Pusher: "mallory"})
	if err != nil {
		t.Fatal(err)
	}
	otherRepo, _ := hooks.PushPayload(hooks.PushInput{Repo: "evil/web", Ref: "refs/heads/deploy-production",
		Before: strings.Repeat("0", 40), After: sha})
	badAfter := bytes.Replace(push, []byte(sha), []byte("not-a-sha"), 1)
	good := func(b []byte) string { return mac256([]byte(testSecret), b) }
	wrong := func(b []byte) string { return mac256([]byte("not the secret"), b) }
	const anySig = "sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

	// hook is a webhook POST of body to /webhook/web with GitHub's headers, edited by kv
	// pairs ("" deletes).
	hook := func(body []byte, kv ...string) func(int) rawRequest {
		return func(int) rawRequest {
			h := map[string]string{"Content-Type": "application/json", "X-GitHub-Event": "push",
				"X-GitHub-Delivery": newDeliveryID(), "User-Agent": "GitHub-Hookshot/flood"}
			for i := 0; i+1 < len(kv); i += 2 {
				h[kv[i]] = kv[i+1]
			}
			return rawRequest{method: "POST", target: "/webhook/web", header: h,
				body: func() io.Reader { return bytes.NewReader(body) }, contentLength: int64(len(body))}
		}
	}
	at := func(method, target string, r func(int) rawRequest) func(int) rawRequest {
		return func(i int) rawRequest { q := r(i); q.method, q.target = method, target; return q }
	}
	withProto := func(proto string, r func(int) rawRequest) func(int) rawRequest {
		return func(i int) rawRequest { q := r(i); q.proto = proto; return q }
	}
	withLength := func(cl int64, r func(int) rawRequest) func(int) rawRequest {
		return func(i int) rawRequest { q := r(i); q.contentLength = cl; return q }
	}
	const sig = "X-Hub-Signature-256"
	unsigned := hook(push)
	var k floodKinds
	k.cheap = []badKind{
		{name: "no signature", req: unsigned, codes: []int{401}, text: sig + ": missing"},
		{name: "wrong signature", req: hook(push, sig, wrong(push)), codes: []int{401}, text: sig + ": does not match"},
		{name: "malformed signature", req: hook(push, sig, "sha256=zz"), codes: []int{401}, text: sig + ": malformed"},
		{name: "sha1 signature only", req: hook(push, "X-Hub-Signature", mac1([]byte(testSecret), push)), codes: []int{401}, text: "X-Hub-Signature (HMAC-SHA1) is refused"},
		{name: "signed, malformed JSON", req: hook([]byte(`{"ref":`), sig, good([]byte(`{"ref":`))), codes: []int{400}, text: "body: not valid JSON"},
		{name: "signed, text/plain", req: hook(push, sig, good(push), "Content-Type", "text/plain"), codes: []int{400}, text: "Content-Type"},
		{name: "unsigned, text/plain", req: hook(push, "Content-Type", "text/plain"), codes: []int{401}, text: sig},
		{name: "signed, no Content-Type", req: hook(push, sig, good(push), "Content-Type", ""), codes: []int{400}, text: "Content-Type: missing"},
		{name: "signed, no X-GitHub-Event", req: hook(push, sig, good(push), "X-GitHub-Event", ""), codes: []int{400}, text: "X-GitHub-Event"},
		{name: "signed, bad X-GitHub-Delivery", req: hook(push, sig, good(push), "X-GitHub-Delivery", "../../etc"), codes: []int{400}, text: "X-GitHub-Delivery"},
		{name: "signed, bad after", req: hook(badAfter, sig, good(badAfter)), codes: []int{400}, text: "after"},
		{name: "signed, other repository", req: hook(otherRepo, sig, good(otherRepo)), codes: []int{422}, text: "repository.full_name"},
		{name: "signed, form without payload", req: hook([]byte("other=1"), sig, good([]byte("other=1")), "Content-Type", "application/x-www-form-urlencoded"), codes: []int{400}, text: "payload"},
		{name: "Content-Length shorter than the body", req: withLength(10, hook(push, sig, wrong(push))), codes: []int{401}, text: sig + ": does not match"},
		{name: "Content-Length shorter, signed for what it announces", req: withLength(10, hook(push, sig, good(push[:10]))), codes: []int{400}, text: "body: not valid JSON"},
		{name: "no Content-Length, no body", req: withLength(-2, hook(nil, sig, good(nil))), codes: []int{400}, text: "body: not valid JSON"},
		{name: "header of 48 KiB", req: hook(push, "X-Padding", strings.Repeat("p", 48<<10)), codes: []int{401}, text: sig},
		{name: "headers over MaxHeaderBytes (net/http's 431)", req: hook(push, "X-Padding", strings.Repeat("p", 100<<10)), codes: []int{431}, text: "headers: larger than"},
		{name: "Transfer-Encoding gzip (net/http's 501)", req: withLength(-2, hook(nil, sig, good(nil), "Transfer-Encoding", "gzip")), codes: []int{400}, text: "Transfer-Encoding"},
		{name: "HTTP/2.0 request line (net/http's 505)", req: withProto("HTTP/2.0", hook(nil, sig, good(nil))), codes: []int{400}, text: "HTTP version"},
		{name: "no Host header (net/http's 400)", req: hook(nil, sig, good(nil), "Host", ""), codes: []int{400}, text: "Host"},
		{name: "request line that does not parse (net/http's 400)", req: withProto("HTTP/1.1 x", hook(nil, sig, good(nil))), codes: []int{400}, text: "malformed"},
	}
	for _, p := range []struct{ target, text string }{
		{"/webhook/./web", "not a clean path"},
		{"//webhook/web", "not a clean path"},
		{"/webhook/web/..", "not a clean path"},
		{"/webhook/web/", "not a clean path"},
		{"/webhook/%2e%2e", "not a clean path"},
		{"/webhook/web/%2e%2e/web", "not a clean path"},
		{"/webhook/..%2fweb", "not a clean path"},
		{"/webhook/we%2Fb", "unknown app"},
		{"/webhook/%77eb%2F", "not a clean path"},
		{"http://127.0.0.1/webhook/./web", "not a clean path"},
		{"*", "not a clean path"},
		{"/webhook/nope", `unknown app "nope"`},
		{"/webhook/" + strings.Repeat("n", 8000), "unknown app"},
		{"/webhook/", "not a clean path"},
		{"/WEBHOOK/web", "no such endpoint"},
	} {
		k.cheap = append(k.cheap, badKind{name: "path " + abbrevPath(p.target), req: at("POST", p.target, hook(push, sig, good(push))),
			codes: []int{400, 404}, text: p.text})
	}
	for _, m := range []string{"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "FLOOD"} {
		text := "method " + m + " not allowed"
		if m == "HEAD" {
			text = "" // no body
		}
		k.cheap = append(k.cheap, badKind{name: "method " + m, req: at(m, "/webhook/web", hook(push, sig, good(push))), codes: []int{405}, text: text})
	}
	k.cheap = append(k.cheap, badKind{name: "OPTIONS *", req: at("OPTIONS", "*", hook(nil)), codes: []int{400}, text: "not a clean path"})

	thirty := func(cl int64) func(int) rawRequest {
		return func(int) rawRequest {
			q := hook(nil, sig, anySig)(0)
			q.body = func() io.Reader { return io.LimitReader(repeatByte('x'), 30<<20) }
			q.contentLength = cl
			return q
		}
	}
	k.big = []badKind{
		{name: "30 MB body, Content-Length", req: thirty(30 << 20), codes: []int{413}, text: "body: larger than 25 MiB", lossy: true},
		// Read until the limit, the budget or the read timeout stops it.
		{name: "30 MB body, chunked", req: thirty(-1), codes: []int{408, 413, 429}, text: "body: ", lossy: true},
	}
	k.lying = badKind{name: "Content-Length longer than the body (held open)", req: withLength(int64(len(push))+1000, hook(push, sig, wrong(push))),
		codes: []int{408}, text: fmt.Sprintf("body: only %d of the %d bytes Content-Length announced arrived", len(push), len(push)+1000)}
	slow := func(cl int64) func(int) rawRequest {
		return func(i int) rawRequest {
			q := hook(push, sig, wrong(push))(i)
			q.contentLength, q.trickle = cl, 100*time.Millisecond
			return q
		}
	}
	k.slowBody = []badKind{
		{name: "slowloris: slow body, Content-Length", req: slow(int64(len(push))), codes: []int{408}, text: "body: only"},
		{name: "slowloris: slow body, chunked", req: slow(-1), codes: []int{408}, text: "body: only"},
	}
	return k
}

func abbrevPath(p string) string {
	if len(p) > 40 {
		return fmt.Sprintf("%s… (%d bytes)", p[:20], len(p))
	}
	return p
}

func mac1(secret, body []byte) string {
	m := hmac.New(sha1.New, secret)
	m.Write(body)
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}

// signedPush delivers a correctly signed push of sha to deploy-production, as GitHub does,
// and says how long the answer took.
func signedPush(c *http.Client, base, sha string) (int, answerOf, time.Duration, error) {
	var ans answerOf
	body, err := hooks.PushPayload(hooks.PushInput{Repo: "acme/web", Ref: "refs/heads/deploy-production",
		Before: strings.Repeat("0", 40), After: sha, Pusher: "octocat"})
	if err != nil {
		return 0, ans, 0, err
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/webhook/web", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", newDeliveryID())
	req.Header.Set("X-Hub-Signature-256", mac256([]byte(testSecret), body))
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, ans, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return resp.StatusCode, ans, took, err
	}
	if err := json.Unmarshal(data, &ans); err != nil {
		return resp.StatusCode, ans, took, fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, data)
	}
	return resp.StatusCode, ans, took, nil
}
