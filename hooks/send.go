package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// UserAgent identifies deliveries made by Send, so the agent's logs tell them from GitHub's.
const UserAgent = "pushdeploy-hook/1"

// maxAnswer bounds how much of the agent's answer Send reads: answers are a few fields, and a
// misconfigured URL pointing at something else must not make the hook read without end.
const maxAnswer = 1 << 20

// Sign returns the X-Hub-Signature-256 value ("sha256=<hex>") of body: HMAC-SHA256 keyed with
// secret, as GitHub computes it.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Answer is what the agent said to a delivery.
type Answer struct {
	StatusCode int    `json:"-"`      // HTTP status of the answer
	Status     string `json:"status"` // e.g. "queued", "ignored"
	Reason     string `json:"reason"` // why the delivery was ignored or refused
	Deploy     string `json:"deploy"` // ID of the deploy the delivery started, if any
	Error      string `json:"error"`  // the refusal, for non-2xx answers
}

// Send POSTs one delivery signed with secret (Content-Type application/json, X-GitHub-Event,
// X-GitHub-Delivery (a random UUIDv4), X-Hub-Signature-256, User-Agent "pushdeploy-hook/1"),
// the way GitHub would, and decodes the agent's JSON answer. It uses client as given (nil means
// http.DefaultClient), so the caller decides timeouts and TLS.
//
// Outcomes:
//   - 2xx with a JSON answer: the Answer, nil;
//   - non-2xx: the Answer (with Error or Reason when the body was JSON) AND an error saying
//     what the agent answered, so a post-receive hook can both print the reason and fail;
//   - no answer (connection, context) or an undecodable 2xx body: nil or a partial Answer
//     with StatusCode, and the error.
func Send(ctx context.Context, client *http.Client, url string, secret []byte, event string, payload []byte) (*Answer, error) {
	if len(secret) == 0 {
		return nil, fmt.Errorf("deliver %s: secret is empty (the agent refuses unsigned deliveries)", event)
	}
	if client == nil {
		client = http.DefaultClient
	}
	id, err := newUUID()
	if err != nil {
		return nil, fmt.Errorf("deliver %s: make delivery id: %w", event, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("deliver %s %s: %w", event, id, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(headerEvent, event)
	req.Header.Set(headerDelivery, id)
	req.Header.Set(headerSig256, Sign(secret, payload))

	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("deliver %s %s: %w", event, id, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	ans := &Answer{StatusCode: resp.StatusCode}
	if err != nil {
		return ans, fmt.Errorf("deliver %s %s: read answer (%s): %w", event, id, resp.Status, err)
	}
	decodeErr := json.Unmarshal(body, ans)
	ans.StatusCode = resp.StatusCode
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	switch {
	case ok && decodeErr != nil:
		return ans, fmt.Errorf("deliver %s %s: decode answer (%s): %w", event, id, resp.Status, decodeErr)
	case ok:
		return ans, nil
	}
	why := ans.Error
	if why == "" {
		why = ans.Reason
	}
	if decodeErr != nil {
		// Not the agent (a proxy, a wrong URL): show the start of what answered instead.
		why = truncate(strings.TrimSpace(string(body)), 200)
	}
	if why == "" {
		return ans, fmt.Errorf("deliver %s %s: %w: %s", event, id, ErrRefused, resp.Status)
	}
	return ans, fmt.Errorf("deliver %s %s: %w: %s: %s", event, id, ErrRefused, resp.Status, why)
}

// ErrRefused is wrapped by Send's error when the agent answered with a non-2xx status, so a
// hook can tell "the agent said no" (do not retry) from "the agent could not be reached".
var ErrRefused = errors.New("agent refused the delivery")

// newUUID returns a random (version 4) UUID, the shape of GitHub's delivery IDs.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}
