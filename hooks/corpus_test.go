package hooks

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// payloadsDir holds 365 real webhook payloads of every event (../shared/corpus beside the
// checkout), read in place.
const payloadsDir = "../../shared/corpus/github-payloads"

// corpusPayload is one real payload and the event GitHub sent it as.
type corpusPayload struct {
	file, event string
	body        []byte
}

// readCorpus reads the payloads listed in the corpus manifest.
func readCorpus(t testing.TB) []corpusPayload {
	t.Helper()
	f, err := os.Open(filepath.Join(payloadsDir, "manifest.tsv"))
	if err != nil {
		testenv.Unavailable(t, "corpus", "%v (../shared/corpus beside the checkout)", err)
	}
	defer f.Close()
	var out []corpusPayload
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		body, err := os.ReadFile(filepath.Join(payloadsDir, fields[0]))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, corpusPayload{file: fields[0], event: fields[1], body: body})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// signedRequest is a delivery of body as event, signed with secret.
func signedRequest(body []byte, event, secret string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/webhook/web", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(headerEvent, event)
	r.Header.Set(headerDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	r.Header.Set(headerSig256, Sign([]byte(secret), body))
	return r
}

// TestRead_corpus reads every real payload as a signed delivery: each is accepted, and each
// push parses, or is refused with a 400 that names the field.
func TestRead_corpus(t *testing.T) {
	payloads := readCorpus(t)
	if len(payloads) < 300 {
		t.Fatalf("read %d payloads from the corpus, want its 365", len(payloads))
	}
	pushes, refused := 0, 0
	for _, p := range payloads {
		d, err := Read(signedRequest(p.body, p.event, "s3cret"), []byte("s3cret"), Options{})
		if err != nil {
			t.Errorf("%s (%s): %v", p.file, p.event, err)
			continue
		}
		if d.Event != p.event || !bytes.Equal(d.Payload, p.body) {
			t.Errorf("%s: got event %q and %d bytes, want %q and the body as sent", p.file, d.Event, len(d.Payload), p.event)
		}
		if p.event != "push" {
			continue
		}
		pushes++
		if _, err := ParsePush(d.Payload); err != nil {
			he, ok := err.(*Error)
			if !ok || he.Status != http.StatusBadRequest || !strings.Contains(he.Msg, ":") {
				t.Errorf("%s: push refused without a 400 naming the field: %v", p.file, err)
			}
			refused++
			t.Logf("%s: refused: %v", p.file, err)
		}
	}
	t.Logf("%d payloads read, %d pushes, %d of them refused with a reason", len(payloads), pushes, refused)
	if pushes == 0 {
		t.Error("no push payload in the corpus")
	}
}
