package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// hookSender POSTs GitHub-format webhooks, signed as GitHub signs them, to one app.
type hookSender struct {
	url    string // http://addr/webhook/app
	secret []byte
	client *http.Client
	run    string // makes delivery ids unique per bench run
	seq    atomic.Int64
}

func newHookSender(addr, app string, secret []byte, conns int) *hookSender {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
	}
	return &hookSender{
		url:    "http://" + addr + "/webhook/" + app,
		secret: secret,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		run:    fmt.Sprintf("%08x", uint32(time.Now().UnixNano())),
	}
}

func (h *hookSender) close() { h.client.CloseIdleConnections() }

// sign is the X-Hub-Signature-256 value for body.
func (h *hookSender) sign(body []byte) string {
	m := hmac.New(sha256.New, h.secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// delivery returns a fresh X-GitHub-Delivery id, GUID-shaped like GitHub's.
func (h *hookSender) delivery() string {
	return fmt.Sprintf("%s-0000-4000-8000-%012x", h.run, h.seq.Add(1))
}

// hookAnswer is the agent's JSON answer to a webhook.
type hookAnswer struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
	Deploy string `json:"deploy"`
	Error  string `json:"error"`
}

// send POSTs one delivery with a precomputed signature and returns the code and answer.
func (h *hookSender) send(ctx context.Context, event string, body []byte, sig string) (int, hookAnswer, error) {
	var ans hookAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return 0, ans, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/pushdeploy-bench")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", h.delivery())
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, ans, fmt.Errorf("POST %s: %w", h.url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, ans, fmt.Errorf("POST %s: read answer: %w", h.url, err)
	}
	if err := json.Unmarshal(data, &ans); err != nil {
		return resp.StatusCode, ans, fmt.Errorf("POST %s: answer %d is not JSON: %q", h.url, resp.StatusCode, data)
	}
	return resp.StatusCode, ans, nil
}

// deploy sends a push of sha to branch and returns the id of the deploy it queued, with
// when the request was sent.
func (h *hookSender) deploy(ctx context.Context, repo, branch, before, sha string) (string, time.Time, error) {
	body := pushBody(repo, "refs/heads/"+branch, before, sha)
	sent := time.Now()
	code, ans, err := h.send(ctx, "push", body, h.sign(body))
	if err != nil {
		return "", sent, err
	}
	if code != http.StatusAccepted || ans.Status != "queued" || ans.Deploy == "" {
		return "", sent, fmt.Errorf("push of %.12s to %s: got %d %+v, want 202 queued with a deploy id", sha, branch, code, ans)
	}
	return ans.Deploy, sent, nil
}

// pushBody is a push event payload in GitHub's format.
func pushBody(repo, ref, before, after string) []byte {
	if before == "" {
		before = "0000000000000000000000000000000000000000"
	}
	commit := map[string]any{
		"id": after, "tree_id": after, "distinct": true,
		"message":   "bench: deploy " + after[:12],
		"timestamp": time.Now().UTC().Format(time.RFC3339),
		"author":    map[string]string{"name": "Bench", "email": "bench@pushdeploy.invalid", "username": "bench"},
		"committer": map[string]string{"name": "Bench", "email": "bench@pushdeploy.invalid", "username": "bench"},
		"added":     []string{}, "removed": []string{}, "modified": []string{},
	}
	owner, name, _ := strings.Cut(repo, "/")
	body, _ := json.Marshal(map[string]any{
		"ref": ref, "before": before, "after": after,
		"created": before == "0000000000000000000000000000000000000000", "deleted": false, "forced": false,
		"base_ref": nil, "compare": "https://github.com/" + repo + "/compare/" + before[:12] + "..." + after[:12],
		"commits": []any{commit}, "head_commit": commit,
		"repository": map[string]any{
			"id": 1, "name": name, "full_name": repo, "private": true,
			"owner":          map[string]string{"name": owner, "login": owner},
			"default_branch": "main",
		},
		"pusher": map[string]string{"name": "bench", "email": "bench@pushdeploy.invalid"},
		"sender": map[string]any{"login": "bench", "id": 1, "type": "User"},
	})
	return body
}

// pingBody is the ping event GitHub sends when a webhook is created.
func pingBody(repo string) []byte {
	body, _ := json.Marshal(map[string]any{
		"zen":     "Design for failure.",
		"hook_id": 1,
		"hook": map[string]any{
			"type": "Repository", "id": 1, "name": "web", "active": true, "events": []string{"push"},
			"config": map[string]string{"content_type": "json", "url": "http://127.0.0.1/webhook/bench", "insecure_ssl": "0"},
		},
		"repository": map[string]any{"id": 1, "full_name": repo, "private": true},
		"sender":     map[string]any{"login": "bench", "id": 1, "type": "User"},
	})
	return body
}

// loadResult is one webhook throughput run.
type loadResult struct {
	Event    string  `json:"event"`
	Clients  int     `json:"clients"`
	Requests int     `json:"requests"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"per_second"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	Maxms    float64 `json:"max_ms"`
}

// load sends total deliveries of one body from clients concurrent clients, each with a
// fresh delivery id, and requires every answer to be 200 with status want. A short warm-up
// (not counted) opens the connections first.
func (h *hookSender) load(ctx context.Context, event string, body []byte, want string, clients, total int) (loadResult, error) {
	res := loadResult{Event: event, Clients: clients, Requests: total}
	sig := h.sign(body)
	check := func() (time.Duration, error) {
		start := time.Now()
		code, ans, err := h.send(ctx, event, body, sig)
		took := time.Since(start)
		if err != nil {
			return took, err
		}
		if code != http.StatusOK || ans.Status != want {
			return took, fmt.Errorf("%s webhook: got %d %+v, want 200 %s", event, code, ans, want)
		}
		return took, nil
	}
	run := func(n int, lat []time.Duration) error {
		var next atomic.Int64
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for range clients {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n || ctx.Err() != nil {
						return
					}
					took, err := check()
					if lat != nil {
						lat[i] = took
					}
					if err != nil {
						mu.Lock()
						if first == nil {
							first = err
						}
						mu.Unlock()
						next.Store(int64(n)) // stop everyone
						return
					}
				}
			})
		}
		wg.Wait()
		if first != nil {
			return first
		}
		return ctx.Err()
	}
	if err := run(4*clients, nil); err != nil {
		return res, err
	}
	lat := make([]time.Duration, total)
	start := time.Now()
	if err := run(total, lat); err != nil {
		return res, err
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	res.Seconds = elapsed.Seconds()
	res.PerSec = float64(total) / elapsed.Seconds()
	res.P50ms = pct(lat, 50)
	res.P99ms = pct(lat, 99)
	res.Maxms = ms(lat[total-1])
	return res, nil
}
