package testenv

import (
	"fmt"
	"os"
	"testing"
)

// Unavailable ends a test that cannot start a component it needs (haproxy, sshd, etcd, git,
// a systemd user manager, root…), with the message "<component> unavailable: <reason>".
// Outside CI it skips the test. Under CI, that is with CI=true in the environment as
// `.ci/run` runs, it fails the test instead: CI installs every component, so a missing one
// is a broken CI machine, and a suite that passes by skipping proves nothing.
//
// Every test in the repository that cannot run for want of a component ends through here;
// a plain t.Skip would let CI pass without running the test.
func Unavailable(t testing.TB, component, format string, args ...any) {
	t.Helper()
	msg := component + " unavailable: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: %s; CI must provide it (see .ci/run)", msg)
	}
	t.Skip(msg)
}
