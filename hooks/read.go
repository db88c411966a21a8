package hooks

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// MaxBody is the largest delivery accepted (GitHub caps payloads at 25 MiB).
const MaxBody = 25 << 20

// maxDeliveryID bounds X-GitHub-Delivery: GitHub sends a 36-character GUID, and the agent
// stores the ID to recognise redeliveries, so an unbounded value would be a storage attack.
const maxDeliveryID = 100

// Header names as GitHub sends them.
const (
	headerSig256   = "X-Hub-Signature-256"
	headerSig1     = "X-Hub-Signature"
	headerEvent    = "X-GitHub-Event"
	headerDelivery = "X-GitHub-Delivery"
)

// Options tune Read.
type Options struct {
	MaxBody   int64 // 0 means MaxBody
	AllowSHA1 bool  // accept X-Hub-Signature (HMAC-SHA1) when X-Hub-Signature-256 is absent
	// Budget, shared by every Read of a listener, bounds the memory held by bodies not yet
	// authenticated; nil bounds each body only by MaxBody.
	Budget *Budget
}

// Delivery is one authenticated webhook delivery.
type Delivery struct {
	Event   string // X-GitHub-Event
	ID      string // X-GitHub-Delivery
	Payload []byte // the JSON document (already extracted from the `payload` field for form-encoded deliveries)
}

// Error is a refusal of a delivery, with the HTTP status it deserves and a message naming the
// header or field and what was expected, e.g. `X-Hub-Signature-256: missing (sign deliveries
// with the app's secret)`. The agent answers with Status and Msg as they are, so that whoever
// configured the sender can tell from GitHub's delivery log why it was refused. Msg never
// contains the secret or a signature value.
type Error struct {
	Status int // 400, 401, 413, ...
	Msg    string

	err error // cause, when the refusal comes from an I/O error rather than the delivery itself
}

// Error returns Msg.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the I/O error behind the refusal, if any, so callers can tell a client that
// went away (context.Canceled, io.ErrUnexpectedEOF) from a bad delivery.
func (e *Error) Unwrap() error { return e.err }

func refuse(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Read reads one delivery from r, authenticating it with secret BEFORE anything parses the body:
// an unauthenticated sender must not be able to reach the JSON or form parsers at all.
//
// Outcomes, each a *Error:
//   - 401 when secret is empty (unsigned deliveries are never accepted), when no usable
//     signature header is present (X-Hub-Signature alone is refused unless opts.AllowSHA1), when
//     the signature is malformed, or when it does not match the body;
//   - 413 when the body is larger than the limit (checked on Content-Length first, then while
//     reading);
//   - 429 when the body outgrows FreeBody and opts.Budget has no room for it within its wait;
//   - 408 when the body stops arriving before the connection's read deadline (a
//     Content-Length longer than the body sent, a sender that stalls); 400 when it cannot be
//     read otherwise;
//   - 400 when, after authentication, X-GitHub-Event or X-GitHub-Delivery is missing or
//     invalid, the Content-Type is neither JSON nor form-encoded, the form has no payload
//     field, or the payload is not valid JSON.
func Read(r *http.Request, secret []byte, opts Options) (*Delivery, error) {
	limit := opts.MaxBody
	if limit <= 0 {
		limit = MaxBody
	}
	if len(secret) == 0 {
		return nil, refuse(http.StatusUnauthorized,
			"secret: empty (the app must set a webhook secret; unsigned deliveries are never accepted)")
	}
	if r.ContentLength > limit {
		return nil, refuse(http.StatusRequestEntityTooLarge, "body: larger than %s", size(limit))
	}
	header, mac, want, rerr := signature(r.Header, secret, opts.AllowSHA1)
	if rerr != nil {
		return nil, rerr
	}
	chunks, held, rerr := readBody(r, limit, mac, opts.Budget)
	defer opts.Budget.release(held)
	if rerr != nil {
		return nil, rerr
	}
	// hmac.Equal compares in constant time.
	if !hmac.Equal(mac.Sum(nil), want) {
		return nil, refuse(http.StatusUnauthorized, "%s: does not match the body (check the app's secret)", header)
	}
	body := join(chunks)
	return parseDelivery(r.Header, body)
}

// signature picks the signature header to verify and checks its shape, so that a malformed
// value is refused before the body is read. It returns the header's name, the MAC to feed
// the body to as it arrives, and the MAC the header says the body has. Each header takes
// only its own algorithm, so X-Hub-Signature-256 can never carry a weaker SHA-1 MAC.
func signature(h http.Header, secret []byte, allowSHA1 bool) (header string, mac hash.Hash, want []byte, err *Error) {
	if vs := h.Values(headerSig256); len(vs) > 0 {
		want, ok := decodeSignature(vs[0], "sha256=", sha256.Size)
		if !ok {
			return "", nil, nil, refuse(http.StatusUnauthorized,
				"%s: malformed, want sha256= followed by 64 hex digits", headerSig256)
		}
		return headerSig256, hmac.New(sha256.New, secret), want, nil
	}
	vs := h.Values(headerSig1)
	if len(vs) == 0 {
		return "", nil, nil, refuse(http.StatusUnauthorized,
			"%s: missing (sign deliveries with the app's secret)", headerSig256)
	}
	if !allowSHA1 {
		return "", nil, nil, refuse(http.StatusUnauthorized,
			"%s: missing; %s (HMAC-SHA1) is refused unless the app sets allow_sha1: true", headerSig256, headerSig1)
	}
	want, ok := decodeSignature(vs[0], "sha1=", sha1.Size)
	if !ok {
		return "", nil, nil, refuse(http.StatusUnauthorized,
			"%s: malformed, want sha1= followed by 40 hex digits", headerSig1)
	}
	return headerSig1, hmac.New(sha1.New, secret), want, nil
}

// decodeSignature returns the n bytes of v, which must be prefix followed by 2n hex digits.
func decodeSignature(v, prefix string, n int) ([]byte, bool) {
	h, ok := strings.CutPrefix(v, prefix)
	if !ok || len(h) != 2*n {
		return nil, false
	}
	b, err := hex.DecodeString(h)
	return b, err == nil
}

// parseDelivery checks the headers and extracts the payload of an authenticated body.
func parseDelivery(h http.Header, body []byte) (*Delivery, error) {
	event := h.Get(headerEvent)
	if event == "" {
		return nil, refuse(http.StatusBadRequest, "%s: missing (GitHub names the event in this header)", headerEvent)
	}
	id := h.Get(headerDelivery)
	if msg := checkDeliveryID(id); msg != "" {
		return nil, refuse(http.StatusBadRequest, "%s: %s", headerDelivery, msg)
	}
	const accepted = "want application/json or application/x-www-form-urlencoded"
	ct := h.Get("Content-Type")
	if ct == "" {
		return nil, refuse(http.StatusBadRequest, "Content-Type: missing, %s", accepted)
	}
	mediaType, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "Content-Type: malformed %q, %s", ct, accepted)
	}
	payload, field := body, "body"
	switch mediaType {
	case "application/json":
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, refuse(http.StatusBadRequest, "body: not a valid form: %v", err)
		}
		if !form.Has("payload") {
			return nil, refuse(http.StatusBadRequest, "payload: missing from the form body")
		}
		payload, field = []byte(form.Get("payload")), "payload"
	default:
		return nil, refuse(http.StatusBadRequest, "Content-Type: got %q, %s", mediaType, accepted)
	}
	if !json.Valid(payload) {
		return nil, refuse(http.StatusBadRequest, "%s: not valid JSON", field)
	}
	return &Delivery{Event: event, ID: id, Payload: payload}, nil
}

// checkDeliveryID returns what is wrong with id, or "" when it is acceptable. The ID ends up
// in logs, file names and database keys, hence the short, plain alphabet.
func checkDeliveryID(id string) string {
	switch {
	case id == "":
		return "missing (GitHub sends a unique ID per delivery)"
	case len(id) > maxDeliveryID:
		return fmt.Sprintf("longer than %d characters", maxDeliveryID)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Sprintf("contains %q, want only letters, digits, '-', '_' and '.'", c)
		}
	}
	return ""
}

// size formats a byte count the way limits are usually configured.
func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
