package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// buildDeb builds the package with build-deb.sh, the script `make deb` runs (see
// testenv.BuildDeb), and returns its path and version.
func buildDeb(t *testing.T) (deb, version string) {
	t.Helper()
	deb = testenv.BuildDeb(t, "./build-deb.sh")
	return deb, debField(t, deb, "Version")
}

// debField returns a control field of the package file deb.
func debField(t *testing.T, deb, field string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "--field", deb, field).Output()
	if err != nil {
		t.Fatalf("dpkg-deb --field %s %s: %v", deb, field, err)
	}
	return strings.TrimSpace(string(out))
}

// repackDeb returns a copy of the package deb with another version and the same files:
// an upgrade, without building the binary again.
func repackDeb(t *testing.T, deb, version string) string {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if out, err := exec.Command("dpkg-deb", "--raw-extract", deb, tree).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --raw-extract: %v: %s", err, out)
	}
	control := filepath.Join(tree, "DEBIAN", "control")
	data, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	data = regexp.MustCompile(`(?m)^Version: .*$`).ReplaceAll(data, []byte("Version: "+version))
	if err := os.WriteFile(control, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "pushdeploy_"+version+"_amd64.deb")
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "-Znone", "--build", tree, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v: %s", err, b)
	}
	return out
}

// run runs argv in the host and returns its standard output and error together; a
// failure fails the test.
func run(t *testing.T, h *testenv.Host, argv ...string) string {
	t.Helper()
	out, err := h.Command(t.Context(), argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(argv, " "), h.Name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// try runs argv in the host and returns its output and whether it exited 0.
func try(t *testing.T, h *testenv.Host, argv ...string) (string, bool) {
	t.Helper()
	out, err := h.Command(t.Context(), argv[0], argv[1:]...).CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}

// prop returns a unit's property as `systemctl show` prints it.
func prop(t *testing.T, h *testenv.Host, unit, name string) string {
	t.Helper()
	return run(t, h, "systemctl", "show", "--property", name, "--value", unit)
}

// exists reports whether path exists in the host (a dangling symlink counts).
func exists(t *testing.T, h *testenv.Host, path string) bool {
	t.Helper()
	_, ok := try(t, h, "sh", "-c", `[ -e "$1" ] || [ -L "$1" ]`, "sh", path)
	return ok
}

// waitFor polls cond every 50 ms until it holds, failing the test with what after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("no %s after %v", what, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
