package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv("CI") == "true", os.Stdout, os.Stderr))
}

// run runs the command, summarizes its output on stdout and returns the exit code: the
// command's when it failed, 1 when testsum found the run wanting, else 0.
func run(args []string, ci bool, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: testsum go test -json [flags] [packages]")
		return 2
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, stderr
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		fmt.Fprintf(stderr, "testsum: %v\n", err)
		return 1
	}
	s := newSummary(stdout)
	readErr := s.read(out)
	err = cmd.Wait()
	code := 0
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
		code = exit.ExitCode()
	}
	switch {
	case readErr != nil || (err != nil && code <= 0):
		fmt.Fprintf(stderr, "testsum: %s: %v\n", args[0], errors.Join(readErr, err))
		code = 1
	case code == 0 && s.failed > 0:
		fmt.Fprintf(stderr, "testsum: %d tests failed, yet %s exited 0\n", s.failed, args[0])
		code = 1
	case code == 0 && ci && len(s.skipped) > 0:
		fmt.Fprintf(stderr, "testsum: CI=true, yet %d tests skipped (tests that never ran):\n\t%s\n",
			len(s.skipped), strings.Join(s.skipped, "\n\t"))
		code = 1
	}
	fmt.Fprintf(stdout, "tests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, len(s.skipped))
	return code
}

// event is one line of `go test -json` (go doc test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// summary counts the tests and holds the output of each test and package until it ends.
type summary struct {
	w              io.Writer
	passed, failed int
	skipped        []string          // "pkg TestX/sub"
	output         map[string]string // by package and test; package-level output under the package alone
}

func newSummary(w io.Writer) *summary { return &summary{w: w, output: map[string]string{}} }

func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintf(s.w, "%s\n", sc.Bytes()) // not an event: go test said it itself
			continue
		}
		s.add(e)
	}
	return sc.Err()
}

// framing is the -v output that only says which test runs: noise in a failure's output.
var framing = []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "PASS\n"}

func (s *summary) add(e event) {
	key := e.Package + " " + e.Test
	switch {
	case e.Action == "build-output":
		fmt.Fprint(s.w, e.Output)
	case e.Action == "run":
		s.output[key] = "" // running: unfinished if its package ends first
	case e.Action == "output" && !slices.ContainsFunc(framing, func(f string) bool { return strings.HasPrefix(e.Output, f) }):
		s.output[key] += e.Output
	case e.Test != "" && e.Action == "pass":
		s.passed++
	case e.Test != "" && e.Action == "fail":
		s.failed++
		fmt.Fprint(s.w, s.output[key])
	case e.Test != "" && e.Action == "skip":
		s.skipped = append(s.skipped, key)
		fmt.Fprint(s.w, s.output[key])
	case e.Test == "" && e.Action == "fail": // a panic or a timeout ends the tests still running
		for _, k := range slices.Sorted(maps.Keys(s.output)) {
			if test, ok := strings.CutPrefix(k, key); ok && test != "" {
				s.failed++
				fmt.Fprintf(s.w, "%s--- FAIL: %s (unfinished)\n", s.output[k], test)
				delete(s.output, k)
			}
		}
		fmt.Fprint(s.w, s.output[key])
	case e.Test == "" && (e.Action == "pass" || e.Action == "skip"): // only go test's line
		for line := range strings.Lines(s.output[key]) {
			if strings.HasPrefix(line, "ok  \t") || strings.HasPrefix(line, "?   \t") {
				fmt.Fprint(s.w, line)
			}
		}
	}
	if e.Action == "pass" || e.Action == "fail" || e.Action == "skip" {
		delete(s.output, key)
	}
}
