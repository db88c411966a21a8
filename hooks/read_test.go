package hooks

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	push := readTestdata(t, "push.json")
	ping := readTestdata(t, "ping.json")
	form := []byte(url.Values{"payload": {string(push)}}.Encode())
	const jsonCT, formCT = "application/json", "application/x-www-form-urlencoded"

	cases := []struct {
		name        string
		req         func() *http.Request
		secret      []byte // nil means testSecret
		opts        Options
		wantStatus  int    // 0: accepted
		wantMsg     string // substring of Error.Msg
		wantEvent   string // when accepted; "" means push
		wantPayload []byte // when accepted; nil means push
	}{
		{name: "json", req: func() *http.Request { return newDelivery(t, push, jsonCT) }},
		{name: "json with charset", req: func() *http.Request { return newDelivery(t, push, "application/json; charset=utf-8") }},
		{name: "form", req: func() *http.Request { return newDelivery(t, form, formCT) }},
		{name: "ping", wantEvent: "ping", wantPayload: ping, req: func() *http.Request {
			r := newDelivery(t, ping, jsonCT)
			r.Header.Set("X-GitHub-Event", "ping")
			return r
		}},
		{name: "delivery id of 100 chars", req: func() *http.Request {
			r := newDelivery(t, push, jsonCT)
			r.Header.Set("X-GitHub-Delivery", strings.Repeat("a", 100))
			return r
		}},
		{name: "delivery id with _ and .", req: func() *http.Request {
			r := newDelivery(t, push, jsonCT)
			r.Header.Set("X-GitHub-Delivery", "host-1_push.42")
			return r
		}},

		// Authentication.
		{name: "empty secret", secret: []byte{}, wantStatus: 401, wantMsg: "secret: empty",
			req: func() *http.Request { return newDelivery(t, push, jsonCT) }},
		{name: "no signature", wantStatus: 401, wantMsg: "X-Hub-Signature-256: missing (sign deliveries with the app's secret)",
			req: func() *http.Request {
				r := newDelivery(t, push, jsonCT)
				r.Header.Del("X-Hub-Signature-256")
				return r
			}},
		{name: "sha1 refused by default", wantStatus: 401, wantMsg: "refused unless the app sets allow_sha1: true",
			req: func() *http.Request { return sha1Delivery(t, push, sig1(testSecret, push)) }},
		{name: "sha1 allowed", opts: Options{AllowSHA1: true},
			req: func() *http.Request { return sha1Delivery(t, push, sig1(testSecret, push)) }},
		{name: "sha1 allowed but wrong", opts: Options{AllowSHA1: true}, wantStatus: 401,
			wantMsg: "X-Hub-Signature: does not match the body (check the app's secret)",
			req:     func() *http.Request { return sha1Delivery(t, push, sig1([]byte("other"), push)) }},
		{name: "sha1 allowed but malformed", opts: Options{AllowSHA1: true}, wantStatus: 401,
			wantMsg: "X-Hub-Signature: malformed", req: func() *http.Request { return sha1Delivery(t, push, "sha1=zz") }},
		{name: "wrong secret", wantStatus: 401, wantMsg: "X-Hub-Signature-256: does not match the body (check the app's secret)",
			req: func() *http.Request { return withSig256(newDelivery(t, push, jsonCT), sig256([]byte("other"), push)) }},
		{name: "tampered body", wantStatus: 401, wantMsg: "X-Hub-Signature-256: does not match the body",
			req: func() *http.Request {
				r := newDelivery(t, push, jsonCT)
				tampered := bytes.Replace(push, []byte("refs/heads/master"), []byte("refs/heads/deploy"), 1)
				r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(tampered)), int64(len(tampered))
				return r
			}},
		{name: "no sha256= prefix", wantStatus: 401, wantMsg: "X-Hub-Signature-256: malformed",
			req: func() *http.Request {
				return withSig256(newDelivery(t, push, jsonCT), strings.TrimPrefix(sig256(testSecret, push), "sha256="))
			}},
		{name: "bad hex", wantStatus: 401, wantMsg: "X-Hub-Signature-256: malformed",
			req: func() *http.Request {
				return withSig256(newDelivery(t, push, jsonCT), "sha256="+strings.Repeat("g", 64))
			}},
		{name: "short hex", wantStatus: 401, wantMsg: "X-Hub-Signature-256: malformed",
			req: func() *http.Request { return withSig256(newDelivery(t, push, jsonCT), sig256(testSecret, push)[:40]) }},
		{name: "empty sha256 header", wantStatus: 401, wantMsg: "X-Hub-Signature-256: malformed",
			req: func() *http.Request { return withSig256(newDelivery(t, push, jsonCT), "") }},
		{name: "sha1 value in sha256 header", opts: Options{AllowSHA1: true}, wantStatus: 401, wantMsg: "X-Hub-Signature-256: malformed",
			req: func() *http.Request { return withSig256(newDelivery(t, push, jsonCT), sig1(testSecret, push)) }},
		{name: "wrong sha256 beats good sha1", opts: Options{AllowSHA1: true}, wantStatus: 401,
			wantMsg: "X-Hub-Signature-256: does not match",
			req: func() *http.Request {
				r := withSig256(newDelivery(t, push, jsonCT), sig256([]byte("other"), push))
				r.Header.Set("X-Hub-Signature", sig1(testSecret, push))
				return r
			}},

		// Size.
		{name: "content-length over limit", wantStatus: 413, wantMsg: "body: larger than 25 MiB",
			req: func() *http.Request {
				r := newDelivery(t, push, jsonCT)
				r.ContentLength = MaxBody + 1
				r.Body = io.NopCloser(failReader{t})
				return r
			}},
		{name: "chunked over default limit", wantStatus: 413, wantMsg: "body: larger than 25 MiB",
			req: func() *http.Request {
				r := newDelivery(t, push, jsonCT)
				r.ContentLength = -1
				r.Body = io.NopCloser(io.LimitReader(zeros{}, MaxBody+1))
				return r
			}},
		{name: "chunked over option limit", opts: Options{MaxBody: 1024}, wantStatus: 413, wantMsg: "body: larger than 1024 bytes",
			req: func() *http.Request {
				r := newDelivery(t, push, jsonCT)
				r.ContentLength = -1
				return r
			}},
		{name: "body read error", wantStatus: 400, wantMsg: "body: read: ",
			req: func() *http.Request {
				r := newDelivery(t, push, jsonCT)
				r.ContentLength = -1
				r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(push[:10]), errReader{io.ErrUnexpectedEOF}))
				return r
			}},

		// Headers and payload, checked only after authentication.
		{name: "event missing", wantStatus: 400, wantMsg: "X-GitHub-Event: missing",
			req: func() *http.Request { return without(newDelivery(t, push, jsonCT), "X-GitHub-Event") }},
		{name: "event empty", wantStatus: 400, wantMsg: "X-GitHub-Event: missing",
			req: func() *http.Request { return with(newDelivery(t, push, jsonCT), "X-GitHub-Event", "") }},
		{name: "delivery missing", wantStatus: 400, wantMsg: "X-GitHub-Delivery: missing",
			req: func() *http.Request { return without(newDelivery(t, push, jsonCT), "X-GitHub-Delivery") }},
		{name: "delivery empty", wantStatus: 400, wantMsg: "X-GitHub-Delivery: missing",
			req: func() *http.Request { return with(newDelivery(t, push, jsonCT), "X-GitHub-Delivery", "") }},
		{name: "delivery too long", wantStatus: 400, wantMsg: "X-GitHub-Delivery: longer than 100 characters",
			req: func() *http.Request {
				return with(newDelivery(t, push, jsonCT), "X-GitHub-Delivery", strings.Repeat("a", 101))
			}},
		{name: "delivery with slash", wantStatus: 400, wantMsg: "X-GitHub-Delivery: contains '/'",
			req: func() *http.Request { return with(newDelivery(t, push, jsonCT), "X-GitHub-Delivery", "../etc") }},
		{name: "delivery with space", wantStatus: 400, wantMsg: "X-GitHub-Delivery: contains ' '",
			req: func() *http.Request { return with(newDelivery(t, push, jsonCT), "X-GitHub-Delivery", "a b") }},
		{name: "delivery with non-ascii", wantStatus: 400, wantMsg: "X-GitHub-Delivery: contains 'é'",
			req: func() *http.Request { return with(newDelivery(t, push, jsonCT), "X-GitHub-Delivery", "café") }},
		{name: "content-type missing", wantStatus: 400,
			wantMsg: "Content-Type: missing, want application/json or application/x-www-form-urlencoded",
			req:     func() *http.Request { return without(newDelivery(t, push, jsonCT), "Content-Type") }},
		{name: "content-type other", wantStatus: 400,
			wantMsg: `Content-Type: got "text/plain", want application/json or application/x-www-form-urlencoded`,
			req:     func() *http.Request { return newDelivery(t, push, "text/plain") }},
		{name: "content-type malformed", wantStatus: 400, wantMsg: "Content-Type: malformed",
			req: func() *http.Request { return newDelivery(t, push, "application/json; =") }},
		{name: "form without payload", wantStatus: 400, wantMsg: "payload: missing from the form body",
			req: func() *http.Request { return newDelivery(t, []byte("other=1"), formCT) }},
		{name: "form with bad escape", wantStatus: 400, wantMsg: "body: not a valid form",
			req: func() *http.Request { return newDelivery(t, []byte("payload=%zz"), formCT) }},
		{name: "form payload not json", wantStatus: 400, wantMsg: "payload: not valid JSON",
			req: func() *http.Request { return newDelivery(t, []byte("payload=%7Bnope"), formCT) }},
		{name: "json body not json", wantStatus: 400, wantMsg: "body: not valid JSON",
			req: func() *http.Request { return newDelivery(t, []byte(`{"ref":`), jsonCT) }},

		// Nothing is parsed before the signature is verified.
		{name: "bad json and bad signature", wantStatus: 401, wantMsg: "X-Hub-Signature-256: does not match",
			req: func() *http.Request {
				return withSig256(newDelivery(t, []byte(`{"ref":`), jsonCT), sig256([]byte("other"), []byte(`{"ref":`)))
			}},
		{name: "bad content-type and bad signature", wantStatus: 401, wantMsg: "X-Hub-Signature-256: does not match",
			req: func() *http.Request {
				return withSig256(newDelivery(t, push, "text/plain"), sig256([]byte("other"), push))
			}},
		{name: "missing event and no signature", wantStatus: 401, wantMsg: "X-Hub-Signature-256: missing",
			req: func() *http.Request {
				return without(without(newDelivery(t, push, jsonCT), "X-GitHub-Event"), "X-Hub-Signature-256")
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			secret := tc.secret
			if secret == nil {
				secret = testSecret
			}
			r := tc.req()
			sigs := r.Header.Values("X-Hub-Signature-256")
			sigs = append(sigs, r.Header.Values("X-Hub-Signature")...)
			d, err := Read(r, secret, tc.opts)
			if tc.wantStatus != 0 {
				if err == nil {
					t.Fatalf("got delivery %q, want refusal %d %q", d.ID, tc.wantStatus, tc.wantMsg)
				}
				e := asError(t, err)
				if e.Status != tc.wantStatus || !strings.Contains(e.Msg, tc.wantMsg) {
					t.Errorf("got %d %q, want %d containing %q", e.Status, e.Msg, tc.wantStatus, tc.wantMsg)
				}
				if strings.Contains(e.Msg, string(testSecret)) {
					t.Errorf("got message %q, which contains the secret", e.Msg)
				}
				for _, s := range sigs {
					_, hexPart, _ := strings.Cut(s, "=")
					if len(hexPart) >= 8 && strings.Contains(e.Msg, hexPart) {
						t.Errorf("got message %q, which contains the signature", e.Msg)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want delivery", err)
			}
			wantEvent, wantPayload := tc.wantEvent, tc.wantPayload
			if wantEvent == "" {
				wantEvent = "push"
			}
			if wantPayload == nil {
				wantPayload = push
			}
			if d.Event != wantEvent {
				t.Errorf("got event %q, want %q", d.Event, wantEvent)
			}
			if d.ID != r.Header.Get("X-GitHub-Delivery") {
				t.Errorf("got id %q, want %q", d.ID, r.Header.Get("X-GitHub-Delivery"))
			}
			if !bytes.Equal(d.Payload, wantPayload) {
				t.Errorf("got payload of %d bytes, want the %d bytes sent", len(d.Payload), len(wantPayload))
			}
		})
	}
}

func TestError_Unwrap(t *testing.T) {
	r := newDelivery(t, []byte(`{}`), "application/json")
	r.ContentLength = -1
	r.Body = io.NopCloser(errReader{io.ErrUnexpectedEOF})
	_, err := Read(r, testSecret, Options{})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %v, want it to wrap io.ErrUnexpectedEOF", err)
	}
}

// BenchmarkRead measures what one accepted push costs the agent: signing the documented
// payload (as GitHub does), verifying it, checking the headers and parsing the push. Its
// deliveries/s metric is the "signed webhooks accepted per second" figure.
func BenchmarkRead(b *testing.B) {
	push := readTestdata(b, "push.json")
	b.SetBytes(int64(len(push)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := http.NewRequest(http.MethodPost, "/hooks/web", bytes.NewReader(push))
		if err != nil {
			b.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-GitHub-Event", "push")
		r.Header.Set("X-GitHub-Delivery", testDeliveryID)
		r.Header.Set("X-Hub-Signature-256", sig256(testSecret, push))
		d, err := Read(r, testSecret, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParsePush(d.Payload); err != nil {
			b.Fatal(err)
		}
	}
	if el := b.Elapsed(); el > 0 {
		b.ReportMetric(float64(b.N)/el.Seconds(), "deliveries/s")
	}
}

func sha1Delivery(tb testing.TB, body []byte, sig string) *http.Request {
	r := newDelivery(tb, body, "application/json")
	r.Header.Del("X-Hub-Signature-256")
	r.Header.Set("X-Hub-Signature", sig)
	return r
}

func withSig256(r *http.Request, sig string) *http.Request {
	r.Header.Set("X-Hub-Signature-256", sig)
	return r
}

func with(r *http.Request, k, v string) *http.Request {
	r.Header.Set(k, v)
	return r
}

func without(r *http.Request, k string) *http.Request {
	r.Header.Del(k)
	return r
}

// failReader fails the test if read: Read must refuse some deliveries without reading the body.
type failReader struct{ tb testing.TB }

func (f failReader) Read([]byte) (int, error) {
	f.tb.Error("body was read, want refusal before reading")
	return 0, io.EOF
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
