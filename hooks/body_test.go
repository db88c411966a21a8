package hooks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestRead_budget: bodies up to FreeBody never draw on the budget; larger ones draw what
// they hold and give it back whatever the outcome; one that finds no room is refused with
// 429 naming the body; a body that stops arriving at the read deadline is refused with 408.
func TestRead_budget(t *testing.T) {
	small := []byte(`[` + strings.Repeat(`{"a":1},`, 1000) + `{}]`) // 8 KB
	free := []byte(`"` + strings.Repeat("f", FreeBody-2) + `"`)     // exactly FreeBody
	large := []byte(`"` + strings.Repeat("x", 300<<10) + `"`)       // 300 KiB
	const budgetSize = 512 << 10
	cases := []struct {
		name       string
		body       []byte
		sign       []byte // secret to sign with; nil: testSecret
		taken      int64  // budget already held by others
		drained    bool   // the rate's tokens already taken by others
		cl         int64  // Content-Length to send; 0: the body's length; -1: chunked
		wantStatus int
		wantMsg    string
	}{
		{name: "small body, budget exhausted", body: small, taken: budgetSize},
		{name: "FreeBody exactly, budget exhausted", body: free, taken: budgetSize},
		{name: "FreeBody exactly, chunked, budget exhausted", body: free, cl: -1, taken: budgetSize},
		{name: "FreeBody and one byte, chunked, budget exhausted", body: append(append([]byte{}, free...), ' '), cl: -1,
			taken: budgetSize, wantStatus: 429, wantMsg: "body: more than 524288 bytes of unauthenticated webhook bodies"},
		{name: "large body within budget", body: large},
		{name: "large chunked body within budget", body: large, cl: -1},
		{name: "large body, budget exhausted", body: large, taken: budgetSize - 128<<10,
			wantStatus: 429, wantMsg: "are being received at once; retry later"},
		{name: "large body, rate exhausted", body: large, drained: true,
			wantStatus: 429, wantMsg: "body: unauthenticated webhook bodies are arriving faster than the agent reads them (1 MiB/s)"},
		{name: "small body, rate exhausted", body: small, drained: true},
		{name: "large body, wrong secret", body: large, sign: []byte("other"),
			wantStatus: 401, wantMsg: "X-Hub-Signature-256: does not match"},
		{name: "large body over the limit", body: bytes.Repeat([]byte("z"), 400<<10), cl: -1,
			wantStatus: 413, wantMsg: "body: larger than 393216 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(budgetSize, 0, 20*time.Millisecond)
			if tc.taken > 0 && !b.sem.TryAcquire(tc.taken) {
				t.Fatal("take budget")
			}
			if tc.drained {
				b.limit = rate.NewLimiter(1<<20, budgetChunk)
				b.limit.AllowN(time.Now(), budgetChunk)
			}
			secret := tc.sign
			if secret == nil {
				secret = testSecret
			}
			r := withSig256(newDelivery(t, tc.body, "application/json"), sig256(secret, tc.body))
			switch tc.cl {
			case -1:
				r.ContentLength = -1
				r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(tc.body))) // no WriterTo, no length
			}
			d, err := Read(r, testSecret, Options{Budget: b, MaxBody: 384 << 10})
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("got %v, want the delivery", err)
				}
				if !bytes.Equal(d.Payload, tc.body) {
					t.Errorf("got payload of %d bytes, want the %d sent", len(d.Payload), len(tc.body))
				}
			} else {
				if err == nil {
					t.Fatalf("got the delivery, want %d %q", tc.wantStatus, tc.wantMsg)
				}
				if e := asError(t, err); e.Status != tc.wantStatus || !strings.Contains(e.Msg, tc.wantMsg) {
					t.Errorf("got %d %q, want %d containing %q", e.Status, e.Msg, tc.wantStatus, tc.wantMsg)
				}
			}
			b.release(tc.taken)
			if !b.sem.TryAcquire(budgetSize) {
				t.Error("budget not whole after Read returned: a body kept what it drew")
			}
		})
	}
}

// TestRead_readTimeout: a body cut by the connection's read deadline is refused with 408,
// saying how much of what Content-Length announced arrived.
func TestRead_readTimeout(t *testing.T) {
	body := []byte(`{"zen":"x"}`)
	for _, tc := range []struct {
		name string
		cl   int64
		want string
	}{
		{"content-length longer than the body", 100, "body: only 5 of the 100 bytes Content-Length announced arrived before the read timeout"},
		{"chunked", -1, "body: only 5 bytes arrived before the read timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newDelivery(t, body, "application/json")
			r.ContentLength = tc.cl
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body[:5]), errReader{fmt.Errorf("read tcp: %w", os.ErrDeadlineExceeded)}))
			_, err := Read(r, testSecret, Options{})
			if e := asError(t, err); e.Status != http.StatusRequestTimeout || e.Msg != tc.want {
				t.Errorf("got %d %q, want 408 %q", e.Status, e.Msg, tc.want)
			}
		})
	}
}

// TestRead_budgetBoundsConcurrentBodies sends ten unsigned 512 KiB bodies at once against a
// 1 MiB budget, each held open at its last byte: no more than two can hold what they need
// (448 KiB each past FreeBody), so at least eight are refused with 429 while the others wait,
// and once every body is answered the whole budget is back.
func TestRead_budgetBoundsConcurrentBodies(t *testing.T) {
	const bodies, size, budgetSize = 10, 512 << 10, 1 << 20
	b := NewBudget(budgetSize, 0, 50*time.Millisecond)
	gate := make(chan struct{})
	events := make(chan int, bodies) // 0: a body is all read and waits at the gate; else a status
	statuses := make(chan int, bodies)
	var wg sync.WaitGroup
	for range bodies {
		wg.Go(func() {
			body := bytes.Repeat([]byte("u"), size)
			r := withSig256(newDelivery(t, body, "application/json"), sig256([]byte("attacker"), body))
			r.ContentLength = -1
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), gateReader{gate, events}))
			_, err := Read(r, testSecret, Options{Budget: b})
			e := asError(t, err)
			if e.Status == http.StatusTooManyRequests {
				events <- e.Status
			}
			statuses <- e.Status
		})
	}
	for range bodies {
		<-events
	}
	close(gate)
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for s := range statuses {
		got[s]++
	}
	if got[429] < bodies-2 || got[429]+got[401] != bodies {
		t.Errorf("got statuses %v, want at least %d of 429 and the rest 401", got, bodies-2)
	}
	if !b.sem.TryAcquire(budgetSize) {
		t.Error("budget not whole after every body was answered")
	}
}

// gateReader says on events that its body is all read, then blocks until gate closes.
type gateReader struct {
	gate   chan struct{}
	events chan int
}

func (g gateReader) Read([]byte) (int, error) {
	g.events <- 0
	<-g.gate
	return 0, io.EOF
}

// A nil budget lets every body through, bounded by MaxBody only.
func TestBudget_nil(t *testing.T) {
	var b *Budget
	if err := b.acquire(context.Background(), 1<<30); err != nil {
		t.Errorf("nil budget: got %v, want no error", err)
	}
	b.release(1 << 30)
}
