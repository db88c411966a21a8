package hooks

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRead sends Read any body with any headers, signed or not: it never panics, a refusal
// is always an *Error with a 4xx status and a message, and only a correctly signed body is
// ever accepted, with its payload unchanged (or the form's payload field).
func FuzzRead(f *testing.F) {
	for _, p := range readCorpusForFuzz(f) {
		f.Add(p.body, p.event, "application/json", true, false)
	}
	f.Add([]byte("payload="+url.QueryEscape(`{"zen":"x"}`)), "ping", "application/x-www-form-urlencoded", true, false)
	f.Add([]byte(`{"ref":`), "push", "application/json", true, false)
	f.Add([]byte(`{}`), "", "text/plain", false, true)
	f.Fuzz(func(t *testing.T, body []byte, event, contentType string, sign, sha1 bool) {
		const secret = "fuzz-secret"
		r := httptest.NewRequest(http.MethodPost, "/webhook/web", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set(headerEvent, event)
		r.Header.Set(headerDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		switch {
		case sign && sha1:
			r.Header.Set(headerSig256, Sign([]byte("another secret"), body))
		case sign:
			r.Header.Set(headerSig256, Sign([]byte(secret), body))
		case sha1:
			r.Header.Set(headerSig1, "sha1="+strings.Repeat("0", 40))
		}
		d, err := Read(r, []byte(secret), Options{AllowSHA1: true})
		if err != nil {
			he, ok := err.(*Error)
			if !ok || he.Status < 400 || he.Status > 499 || he.Msg == "" {
				t.Fatalf("refusal %#v: want an *Error with a 4xx status and a message", err)
			}
			if strings.Contains(he.Msg, secret) {
				t.Fatalf("refusal quotes the secret: %q", he.Msg)
			}
			return
		}
		if !sign || sha1 {
			t.Fatalf("accepted a delivery that is not signed with the secret (sign %v, wrong secret %v)", sign, sha1)
		}
		if d.Event != event {
			t.Fatalf("event %q, want %q", d.Event, event)
		}
		if strings.HasPrefix(contentType, "application/json") && !bytes.Equal(d.Payload, body) {
			t.Fatalf("payload differs from the body")
		}
	})
}

// FuzzParsePush: any payload parses or is refused with a 400 naming what is wrong; a parsed
// push always has a repository, a ref and a 40-hex after.
func FuzzParsePush(f *testing.F) {
	for _, p := range readCorpusForFuzz(f) {
		if p.event == "push" {
			f.Add(p.body)
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		p, err := ParsePush(payload)
		if err != nil {
			if he, ok := err.(*Error); !ok || he.Status != http.StatusBadRequest {
				t.Fatalf("refusal %#v: want an *Error with status 400", err)
			}
			return
		}
		if p.Repo == "" || p.Ref == "" || len(p.After) != 40 {
			t.Fatalf("parsed push lacks a field: %+v", p)
		}
	})
}

// readCorpusForFuzz is the real payloads, as the fuzzer's seeds.
func readCorpusForFuzz(f *testing.F) []corpusPayload {
	f.Helper()
	return readCorpus(f)
}
