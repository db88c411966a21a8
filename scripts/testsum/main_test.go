package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Events as `go test -json` writes them, for a package p with tests TestA and TestB.
const (
	runA  = `{"Action":"run","Package":"p","Test":"TestA"}` + "\n" + `{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}` + "\n"
	passA = `{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:1: quiet\n"}` + "\n" + `{"Action":"pass","Package":"p","Test":"TestA"}` + "\n"
	runB  = `{"Action":"run","Package":"p","Test":"TestB"}` + "\n"
	failB = `{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:1: boom\n"}` + "\n" + `{"Action":"fail","Package":"p","Test":"TestB"}` + "\n"
	skipB = `{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:1: haproxy unavailable\n"}` + "\n" + `{"Action":"skip","Package":"p","Test":"TestB"}` + "\n"
	okP   = `{"Action":"output","Package":"p","Output":"PASS\n"}` + "\n" + `{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}` + "\n" + `{"Action":"pass","Package":"p"}` + "\n"
	failP = `{"Action":"output","Package":"p","Output":"FAIL\tp\t0.1s\n"}` + "\n" + `{"Action":"fail","Package":"p"}` + "\n"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		events     string
		exit       string
		ci         bool
		wantCode   int
		wantOut    []string // in order
		notOut     []string
		wantStderr string
	}{
		{"pass", runA + passA + okP, "0", true, 0,
			[]string{"ok  \tp\t0.1s\n", "tests: 1 passed, 0 failed, 0 skipped\n"}, []string{"quiet", "RUN", "PASS\n"}, ""},
		{"fail", runA + passA + runB + failB + failP, "1", true, 1,
			[]string{"b_test.go:1: boom\n", "FAIL\tp\t0.1s\n", "tests: 1 passed, 1 failed, 0 skipped\n"}, []string{"quiet"}, ""},
		{"skip", runA + passA + runB + skipB + okP, "0", false, 0,
			[]string{"haproxy unavailable\n", "ok  \tp", "tests: 1 passed, 0 failed, 1 skipped\n"}, nil, ""},
		{"skip under CI", runA + passA + runB + skipB + okP, "0", true, 1,
			[]string{"tests: 1 passed, 0 failed, 1 skipped\n"}, nil, "CI=true, yet 1 tests skipped (tests that never ran):\n\tp TestB\n"},
		{"unfinished", runA + runB + failB + failP, "1", false, 1,
			[]string{"boom", "--- FAIL: TestA (unfinished)\n", "FAIL\tp", "tests: 0 passed, 2 failed, 0 skipped\n"}, nil, ""},
		{"exit code kept", "not json\n", "3", false, 3,
			[]string{"not json\n", "tests: 0 passed, 0 failed, 0 skipped\n"}, nil, ""},
		{"failure yet exit 0", runB + failB + failP, "0", false, 1,
			[]string{"tests: 0 passed, 1 failed, 0 skipped\n"}, nil, "1 tests failed, yet sh exited 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events := filepath.Join(t.TempDir(), "events")
			if err := os.WriteFile(events, []byte(tc.events), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := run([]string{"sh", "-c", `cat "$0"; exit ` + tc.exit, events}, tc.ci, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstderr: %s", code, tc.wantCode, stderr.String())
			}
			out := stdout.String()
			rest := out
			for _, w := range tc.wantOut {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("output lacks %q (in this order):\n%s", w, out)
					break
				}
				rest = rest[i+len(w):]
			}
			if rest != "" && len(tc.wantOut) > 0 {
				t.Errorf("output goes on after the closing line: %q", rest)
			}
			for _, n := range tc.notOut {
				if strings.Contains(out, n) {
					t.Errorf("output has %q, want it left out:\n%s", n, out)
				}
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr %q, want %q in it", stderr.String(), tc.wantStderr)
			}
		})
	}
}
