package systemd_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/rollout"
)

// TestManager_Journal reads the journal of a user unit whose process wrote a line and
// exited before journald read it, which journald then cannot attribute to the unit: the
// case of every instance that fails at once. journald is paused while the unit runs, so
// the race is lost every time rather than once in fifteen runs.
func TestManager_Journal(t *testing.T) {
	t.Parallel()
	sd, m := openManager(t, rollout.File{Name: "boom.service", Content: "[Service]\nExecStart=/bin/sh -c 'echo boom; echo exiting; exit 3'\n"})
	resume := sd.PauseJournal(t)
	if err := m.Start(t.Context(), "boom.service"); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "boom.service", "failed")
	resume()

	lines, err := m.Journal(t.Context(), "boom.service", 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("journal of boom.service:\n%s", strings.Join(lines, "\n"))
	i := slices.Index(lines, "boom")
	if i < 0 || i+1 >= len(lines) || lines[i+1] != "exiting" {
		t.Errorf("journal of boom.service: %q, want the process's lines boom and exiting, in order", lines)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "status=3/NOTIMPLEMENTED") }) {
		t.Errorf("journal of boom.service: %q, want the manager's line about its exit", lines)
	}

	if got, err := m.Journal(t.Context(), "boom.service", 2); err != nil || !slices.Equal(got, lines[len(lines)-2:]) {
		t.Errorf("last 2 lines: got %q (%v), want %q", got, err, lines[len(lines)-2:])
	}
	for unit, n := range map[string]int{"never-started.service": 10, "boom.service": 0} {
		if got, err := m.Journal(t.Context(), unit, n); err != nil || len(got) != 0 {
			t.Errorf("journal of %s, %d lines: got %q (%v), want none and no error", unit, n, got, err)
		}
	}
}
