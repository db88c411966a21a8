package hooks

import (
	"context"
	"crypto/hmac"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestSign(t *testing.T) {
	// The test values from GitHub's "Validating webhook deliveries" page.
	got := Sign([]byte("It's a Secret to Everybody"), []byte("Hello, World!"))
	want := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestSend(t *testing.T) {
	payload := readTestdata(t, "push.json")
	cases := []struct {
		name      string
		status    int
		answer    string
		want      Answer
		wantErr   string // "" means success
		wantRefus bool   // error wraps ErrRefused
	}{
		{name: "queued", status: 202, answer: `{"status":"queued","deploy":"d-1"}`,
			want: Answer{StatusCode: 202, Status: "queued", Deploy: "d-1"}},
		{name: "ignored", status: 200, answer: `{"status":"ignored","reason":"branch main is not deployed"}`,
			want: Answer{StatusCode: 200, Status: "ignored", Reason: "branch main is not deployed"}},
		{name: "refused", status: 401, answer: `{"status":"refused","error":"X-Hub-Signature-256: does not match the body"}`,
			want:    Answer{StatusCode: 401, Status: "refused", Error: "X-Hub-Signature-256: does not match the body"},
			wantErr: "agent refused the delivery: 401 Unauthorized: X-Hub-Signature-256: does not match the body", wantRefus: true},
		{name: "refused with reason only", status: 409, answer: `{"status":"stale","reason":"older than the deployed commit"}`,
			want:    Answer{StatusCode: 409, Status: "stale", Reason: "older than the deployed commit"},
			wantErr: "409 Conflict: older than the deployed commit", wantRefus: true},
		{name: "proxy error page", status: 502, answer: "<html>bad gateway</html>",
			want: Answer{StatusCode: 502}, wantErr: "502 Bad Gateway: <html>bad gateway</html>", wantRefus: true},
		{name: "2xx not json", status: 200, answer: "ok",
			want: Answer{StatusCode: 200}, wantErr: "decode answer (200 OK)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				checkSent(t, r, payload)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.answer)
			}))
			defer srv.Close()

			got, err := Send(t.Context(), srv.Client(), srv.URL+"/hooks/web", testSecret, "push", payload)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got error %v, want one containing %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrRefused) != tc.wantRefus {
				t.Errorf("got errors.Is(err, ErrRefused) = %v, want %v (err %v)", !tc.wantRefus, tc.wantRefus, err)
			}
			if got == nil || *got != tc.want {
				t.Errorf("got answer %+v, want %+v", got, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), string(testSecret)) {
				t.Errorf("got error %q, which contains the secret", err)
			}
		})
	}
}

// checkSent checks a delivery the way GitHub's receivers would, without using this package.
func checkSent(t *testing.T, r *http.Request, payload []byte) {
	t.Helper()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("read sent body: %v", err)
	}
	if r.Method != http.MethodPost {
		t.Errorf("got method %s, want POST", r.Method)
	}
	if string(body) != string(payload) {
		t.Errorf("got body of %d bytes, want the %d bytes of payload", len(body), len(payload))
	}
	if got, want := r.Header.Get("X-Hub-Signature-256"), sig256(testSecret, body); !hmac.Equal([]byte(got), []byte(want)) {
		t.Errorf("got signature %s, want %s", got, want)
	}
	for k, want := range map[string]string{
		"Content-Type": "application/json", "X-GitHub-Event": "push", "User-Agent": "pushdeploy-hook/1",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("got %s %q, want %q", k, got, want)
		}
	}
	if id := r.Header.Get("X-GitHub-Delivery"); !uuidV4.MatchString(id) {
		t.Errorf("got X-GitHub-Delivery %q, want a UUIDv4", id)
	}
}

// TestSend_Read checks that what Send produces is what Read accepts, and that deliveries get
// distinct IDs, since the agent uses them to recognise redeliveries.
func TestSend_Read(t *testing.T) {
	in := PushInput{Repo: "acme/web", Ref: "refs/heads/deploy-production", Before: shaB, After: shaA, Pusher: "ann", HeadMessage: "go"}
	payload, err := PushPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	ids := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := Read(r, testSecret, Options{})
		if err != nil {
			e := asError(t, err)
			w.WriteHeader(e.Status)
			io.WriteString(w, `{"status":"refused","error":"`+e.Msg+`"}`)
			return
		}
		if _, err := ParsePush(d.Payload); err != nil {
			t.Errorf("parse sent push: %v", err)
		}
		ids <- d.ID
		io.WriteString(w, `{"status":"queued","deploy":"d-7"}`)
	}))
	defer srv.Close()

	for range 2 {
		ans, err := Send(t.Context(), srv.Client(), srv.URL, testSecret, "push", payload)
		if err != nil || ans.Deploy != "d-7" {
			t.Fatalf("got %+v, %v, want deploy d-7", ans, err)
		}
	}
	if a, b := <-ids, <-ids; a == b {
		t.Errorf("got the same delivery id %q twice, want distinct ids", a)
	}

	_, err = Send(t.Context(), srv.Client(), srv.URL, []byte("wrong"), "push", payload)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "401 Unauthorized: X-Hub-Signature-256: does not match") {
		t.Errorf("got %v, want a 401 refusal naming the signature", err)
	}
}

func TestSend_Failures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	url := srv.URL
	srv.Close() // nothing listens any more

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	cases := []struct {
		name    string
		ctx     context.Context
		url     string
		secret  []byte
		wantErr string
	}{
		{"empty secret", t.Context(), url, nil, "deliver push: secret is empty"},
		{"unreachable", t.Context(), url, testSecret, "connect"},
		{"cancelled", cancelled, url, testSecret, "context canceled"},
		{"bad url", t.Context(), "://nope", testSecret, "missing protocol scheme"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ans, err := Send(tc.ctx, nil, tc.url, tc.secret, "push", []byte(`{}`))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %+v, %v, want error containing %q", ans, err, tc.wantErr)
			}
			if errors.Is(err, ErrRefused) {
				t.Errorf("got ErrRefused in %v, want it only for answers", err)
			}
		})
	}
}
