package testenv

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// unavailableChild makes the test binary, run again by TestUnavailable, call Unavailable.
const unavailableChild = "PUSHDEPLOY_TESTENV_UNAVAILABLE_CHILD"

// TestUnavailable runs this test binary again with and without CI=true: a test cannot
// watch itself skip or fail.
func TestUnavailable(t *testing.T) {
	if os.Getenv(unavailableChild) == "1" {
		Unavailable(t, "frobnicator", "not installed (Debian package %s)", "frob")
		t.Error("Unavailable returned")
		return
	}
	for _, tc := range []struct {
		ci       string // "" for unset
		wantFail bool
		want     string
	}{
		{"", false, "--- SKIP: TestUnavailable"},
		{"false", false, "--- SKIP: TestUnavailable"},
		{"true", true, "--- FAIL: TestUnavailable"},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestUnavailable$", "-test.v", "-test.count=1")
			cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CI=") })
			cmd.Env = append(cmd.Env, unavailableChild+"=1")
			if tc.ci != "" {
				cmd.Env = append(cmd.Env, "CI="+tc.ci)
			}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if failed := errors.As(err, &exit); failed != tc.wantFail || (err != nil && !failed) {
				t.Errorf("child exit: %v, want failure %v\n%s", err, tc.wantFail, out)
			}
			msg := "frobnicator unavailable: not installed (Debian package frob)"
			if tc.wantFail {
				msg = "CI=true: " + msg
			}
			for _, w := range []string{tc.want, msg} {
				if !strings.Contains(string(out), w) {
					t.Errorf("child output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "Unavailable returned") {
				t.Errorf("Unavailable returned:\n%s", out)
			}
		})
	}
}
