package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tally counts the answers per kind and collects what was wrong with them.
type tally struct {
	mu       sync.Mutex
	codes    map[string]map[int]int
	failures []string
	failed   int
}

func (tl *tally) count(kind string, code int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.codes == nil {
		tl.codes = map[string]map[int]int{}
	}
	if tl.codes[kind] == nil {
		tl.codes[kind] = map[int]int{}
	}
	tl.codes[kind][code]++
}

func (tl *tally) fail(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.failed++
	if len(tl.failures) < 20 {
		tl.failures = append(tl.failures, fmt.Sprintf(format, args...))
	}
}

// check counts one answer and records what is wrong with it: no answer, a status that is
// not one of the kind's (never a 3xx or 5xx), an answer that is not JSON, or an error that
// does not name what is wrong.
func (tl *tally) check(k badKind, a rawAnswer) {
	tl.count(k.name, a.code)
	switch {
	case a.err != nil && k.lossy && isReset(a.err):
		return // counted as 0, checked against the agent's count of its answers
	case a.err != nil:
		tl.fail("%s: no answer: %v", k.name, a.err)
		return
	case !slices.Contains(k.codes, a.code) || a.code < 400 || a.code > 499:
		tl.fail("%s: got %d %q, want one of %v", k.name, a.code, a.body, k.codes)
		return
	case a.header.Get("Content-Type") != "application/json":
		tl.fail("%s: got %d with Content-Type %q, want application/json", k.name, a.code, a.header.Get("Content-Type"))
		return
	case k.text == "":
		return
	}
	var ans answerOf
	if err := json.Unmarshal(a.body, &ans); err != nil || ans.Status != "error" || !strings.Contains(ans.Error, k.text) {
		tl.fail("%s: got %d %q, want a JSON error naming %q", k.name, a.code, a.body, k.text)
	}
}

// seen is how many answers of these statuses the clients got.
func (tl *tally) seen(codes ...int) int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var n int
	for _, byCode := range tl.codes {
		for _, c := range codes {
			n += byCode[c]
		}
	}
	return n
}

// lost is how many answers to these kinds were lost to a reset.
func (tl *tally) lost(kinds ...badKind) int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var n int
	for _, k := range kinds {
		n += tl.codes[k.name][0]
	}
	return n
}

// isReset reports whether err is the connection closed or reset under the client.
func isReset(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// report logs the requests sent and the statuses answered, per kind, and fails the test
// with the first failures.
func (tl *tally) report(t *testing.T) {
	t.Helper()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	names := make([]string, 0, len(tl.codes))
	for n := range tl.codes {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	var total int
	per := map[int]int{}
	for _, n := range names {
		var sent int
		var codes []string
		for c, cnt := range tl.codes[n] {
			sent += cnt
			per[c] += cnt
			codes = append(codes, fmt.Sprintf("%d×%d", c, cnt))
		}
		sort.Strings(codes)
		total += sent
		fmt.Fprintf(&b, "\n  %-60s %6d  %s", n, sent, strings.Join(codes, " "))
	}
	t.Logf("bad requests and slow clients: %d sent, by status %v (0: closed without an answer)%s", total, per, b.String())
	if tl.failed > 0 {
		t.Errorf("%d bad requests were not answered as they should be; the first:\n  %s", tl.failed, strings.Join(tl.failures, "\n  "))
	}
}

// dropLines passes on the log lines that do not contain drop.
type dropLines struct {
	w    io.Writer
	drop []byte
}

func (d dropLines) Write(p []byte) (int, error) {
	if bytes.Contains(p, d.drop) {
		return len(p), nil
	}
	return d.w.Write(p)
}

// usage is what the process holds: goroutines, open descriptors and resident memory.
type usage struct {
	goroutines, fds int
	rss, heap       int64 // VmRSS; the Go heap's spans in use
}

func (u usage) String() string {
	return fmt.Sprintf("%d goroutines, %d open fds, heap %.1f MiB, RSS %.1f MiB", u.goroutines, u.fds,
		float64(u.heap)/(1<<20), float64(u.rss)/(1<<20))
}

// measure returns the process's usage after a garbage collection that gives freed memory
// back to the system, as the runtime's scavenger would in time. The test runs in the
// agent's process: these are the agent's (and the test's few goroutines and buffers).
func measure(t *testing.T) usage {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{goroutines: runtime.NumGoroutine(), fds: len(fds), rss: procStatus(t, "VmRSS"), heap: int64(ms.HeapInuse)}
}

// settle waits (at most a minute) until goroutines and descriptors are back within the
// tolerances of before: the server closes idle connections after IdleTimeout.
func settle(t *testing.T, before usage, goroutines, fds int) usage {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		u := measure(t)
		if u.goroutines <= before.goroutines+goroutines && u.fds <= before.fds+fds {
			return u
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("after the flood: %s, want at most %d goroutines and %d fds (before: %s); goroutines:\n%s",
				u, before.goroutines+goroutines, before.fds+fds, before, buf[:runtime.Stack(buf, true)])
			return u
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// procStatus is a "kB" field of /proc/self/status, in bytes.
func procStatus(t testing.TB, field string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("/proc/self/status %s: %v", field, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/self/status: no %s", field)
	return 0
}
