package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// floodFigures is what bad webhooks cost the agent, and what they cost real pushes.
type floodFigures struct {
	// 20 concurrent 30 MB bodies with a well-formed but wrong signature, sent chunked: the
	// agent must read them to verify them.
	BigBodies   int         `json:"big_bodies"`
	BigIdleRSS  int64       `json:"big_idle_rss_bytes"` // the agent's VmRSS just before
	BigPeakRSS  int64       `json:"big_peak_rss_bytes"` // its VmHWM, reset just before
	BigStatuses map[int]int `json:"big_statuses"`       // 0: no answer (the agent closed first)

	// Bad requests from Clients senders (and BigSenders sending 30 MB bodies in a loop)
	// while signed pushes of the deployed commit arrive, each answered 202.
	Clients     int         `json:"clients"`
	BigSenders  int         `json:"big_senders"`
	Bad         int         `json:"bad_requests"` // from the Clients
	BadPerSec   float64     `json:"bad_per_second"`
	BadStatuses map[int]int `json:"bad_statuses"`
	BigLoop     map[int]int `json:"big_senders_statuses"` // the BigSenders' answers, 0: none
	Pushes      int         `json:"pushes"`
	QuietP50ms  float64     `json:"quiet_push_p50_ms"` // the same pushes just before, no flood
	QuietP99ms  float64     `json:"quiet_push_p99_ms"`
	PushP50ms   float64     `json:"push_p50_ms"`
	PushP99ms   float64     `json:"push_p99_ms"`
	PushMaxms   float64     `json:"push_max_ms"`
}

// thirtyMB is the size of the big bodies: over the 25 MiB limit.
const thirtyMB = 30 << 20

// anySignature is well formed, so the agent reads the body to check it, and never right.
const anySignature = "sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// flood measures the agent under bad webhooks: first its peak RSS while it reads bigBodies
// 30 MB bodies at once; then the latency of pushes real pushes (one every 50 ms) of sha,
// the commit the branch points at, while clients senders send bad requests of every cheap
// kind and bigSenders 30 MB bodies, back to back.
func (b *bench) flood(ctx context.Context, h *hookSender, sha string, bigBodies, clients, bigSenders, pushes int) (floodFigures, error) {
	f := floodFigures{BigBodies: bigBodies, Clients: clients, BigSenders: bigSenders, Pushes: pushes,
		BigStatuses: map[int]int{}, BadStatuses: map[int]int{}, BigLoop: map[int]int{}}
	var mu sync.Mutex
	// The agent closes the connection of every refusal: most bad requests dial anew.
	bad := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableCompression: true}}
	defer bad.CloseIdleConnections()

	rss, err := b.agent.RSS()
	if err != nil {
		return f, err
	}
	f.BigIdleRSS = rss
	if err := b.agent.ResetPeakRSS(); err != nil {
		return f, err
	}
	var wg sync.WaitGroup
	for range bigBodies {
		wg.Go(func() {
			code := sendBad(ctx, bad, bigBody(h))
			mu.Lock()
			f.BigStatuses[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if f.BigPeakRSS, err = b.agent.PeakRSS(); err != nil {
		return f, err
	}

	quiet, last, err := realPushes(ctx, h, sha, pushes)
	if err != nil {
		return f, err
	}
	if _, err := b.agent.WaitDeploy(ctx, app, last, 2*time.Minute); err != nil {
		return f, err
	}
	f.QuietP50ms, f.QuietP99ms = pct(quiet, 50), pct(quiet, 99)

	kinds := badRequests(h)
	stop := make(chan struct{})
	var sent atomic.Int64
	start := time.Now()
	for i := range clients + bigSenders {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				req, tally := bigBody(h), f.BigLoop
				if i < clients {
					req, tally = kinds[(i+n*clients)%len(kinds)](), f.BadStatuses
				}
				code := sendBad(ctx, bad, req)
				if i < clients {
					sent.Add(1)
				}
				mu.Lock()
				tally[code]++
				mu.Unlock()
			}
		})
	}
	lat, last, perr := realPushes(ctx, h, sha, pushes)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	if perr != nil {
		return f, perr
	}
	// The newest push wins: the last one is deployed before the next measurement.
	if _, err := b.agent.WaitDeploy(ctx, app, last, 2*time.Minute); err != nil {
		return f, err
	}
	f.Bad = int(sent.Load())
	f.BadPerSec = float64(f.Bad) / elapsed.Seconds()
	f.PushP50ms, f.PushP99ms, f.PushMaxms = pct(lat, 50), pct(lat, 99), ms(lat[len(lat)-1])
	for code := range f.BadStatuses {
		if code < 400 || code > 499 { // 0, no answer, included: only the agent closes
			return f, fmt.Errorf("bad requests during the flood: answered %v, want only 4xx", f.BadStatuses)
		}
	}
	return f, nil
}

// realPushes sends n pushes of sha, signed, one per 50 ms, each of which must be answered
// 202, and returns their latencies, sorted, and the last deploy's id.
func realPushes(ctx context.Context, h *hookSender, sha string, n int) ([]time.Duration, string, error) {
	lat := make([]time.Duration, 0, n)
	var last string
	body := pushBody(repo, "refs/heads/"+branch, "", sha)
	sig := h.sign(body)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range n {
		<-tick.C
		t0 := time.Now()
		code, ans, err := h.send(ctx, "push", body, sig)
		if err == nil && (code != http.StatusAccepted || ans.Status != "queued") {
			err = fmt.Errorf("real push: got %d %+v, want 202 queued", code, ans)
		}
		if err != nil {
			return nil, "", err
		}
		lat = append(lat, time.Since(t0))
		last = ans.Deploy
	}
	slices.Sort(lat)
	return lat, last, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the p-th percentile of sorted latencies, in ms.
func pct(sorted []time.Duration, p int) float64 {
	return ms(sorted[min(len(sorted)-1, len(sorted)*p/100)])
}

// sendBad sends one bad request and returns its status, or 0 when there was no answer.
func sendBad(ctx context.Context, c *http.Client, req *http.Request) int {
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// bigBody is a 30 MB push body of no length given (sent chunked), with a wrong signature.
func bigBody(h *hookSender) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, h.url, io.NopCloser(io.LimitReader(zeroes{}, thirtyMB)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", h.delivery())
	req.Header.Set("X-Hub-Signature-256", anySignature)
	return req
}

// badRequests are the cheap kinds of bad request: unsigned, badly signed, signed but
// malformed, for an unknown app, with another method.
func badRequests(h *hookSender) []func() *http.Request {
	push := pushBody(repo, "refs/heads/"+branch, "", strings.Repeat("a", 40))
	post := func(url string, body []byte, kv ...string) func() *http.Request {
		return func() *http.Request {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-GitHub-Delivery", h.delivery())
			for i := 0; i+1 < len(kv); i += 2 {
				req.Header.Set(kv[i], kv[i+1])
			}
			return req
		}
	}
	malformed := []byte(`{"ref":`)
	return []func() *http.Request{
		post(h.url, push),
		post(h.url, push, "X-Hub-Signature-256", anySignature),
		post(h.url, push, "X-Hub-Signature", "sha1="+strings.Repeat("0", 40)),
		post(h.url, malformed, "X-Hub-Signature-256", h.sign(malformed)),
		post(h.url, push, "X-Hub-Signature-256", h.sign(push), "Content-Type", "text/plain"),
		post(strings.TrimSuffix(h.url, app)+"nope", push, "X-Hub-Signature-256", h.sign(push)),
		func() *http.Request { req, _ := http.NewRequest(http.MethodGet, h.url, nil); return req },
	}
}

type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// floodTarget is the latency a real push must keep during a flood, at p99.
const floodTarget = 50.0 // ms

func (f *floodFigures) rows(row func(...string)) {
	const none = "—"
	row(fmt.Sprintf("7. %d concurrent 30 MB bodies, bad signature: peak RSS", f.BigBodies),
		fmt.Sprintf("%s (idle %s)", human(f.BigPeakRSS), human(f.BigIdleRSS)), none)
	row(fmt.Sprintf("7. flood: bad webhooks (%d clients + %d sending 30 MB)", f.Clients, f.BigSenders),
		fmt.Sprintf("%.0f req/s, %s", f.BadPerSec, statuses(f.BadStatuses)), none)
	verdict := "target p99 <= 50 ms: met"
	if f.PushP99ms > floodTarget {
		verdict = "target p99 <= 50 ms: MISSED"
	}
	row(fmt.Sprintf("7.   %d real pushes meanwhile, all 202: p50 / p99", f.Pushes),
		fmt.Sprintf("%.2f / %.2f ms (%s)", f.PushP50ms, f.PushP99ms, verdict), none)
	row("7.   the same pushes just before, no flood: p50 / p99", fmt.Sprintf("%.2f / %.2f ms", f.QuietP50ms, f.QuietP99ms), none)
}

func (f *floodFigures) explain(w io.Writer) {
	fmt.Fprintf(w, `7. peak RSS: the agent's VmHWM, reset just before %d clients each POST a 30 MB body at once,
   chunked (no Content-Length), with a well-formed but wrong signature, so that the agent reads
   each to verify it; answers %s. Then %d pushes of the deployed commit, one per 50 ms, each
   signed and answered 202 (queued), while %d clients send bad webhooks back to back (unsigned,
   wrongly signed, sha1-only, signed but malformed JSON or text/plain, unknown app, GET; %d sent)
   and %d send 30 MB bodies (%s). Latency is per push, at the client; each push is
   synced to disk before it is answered, and queues a deploy (the newest wins).
`, f.BigBodies, statuses(f.BigStatuses), f.Pushes, f.Clients, f.Bad, f.BigSenders, statuses(f.BigLoop))
}

// statuses formats answers by status, "413×12 429×8"; 0 is a connection closed unanswered.
func statuses(m map[int]int) string {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		name := fmt.Sprint(c)
		if c == 0 {
			name = "closed"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, m[c]))
	}
	return strings.Join(parts, " ")
}
