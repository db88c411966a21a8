package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BuildDeb builds pushdeploy's Debian package with script (packaging/build-deb.sh, what
// `make deb` runs) into a temporary directory of the test's, uncompressed (xz takes some
// 15 s of CPU, and the package is not shipped), and returns its path.
func BuildDeb(t testing.TB, script string) string {
	t.Helper()
	for _, prog := range []string{"make", "git", "dpkg-deb"} {
		if _, err := exec.LookPath(prog); err != nil {
			Unavailable(t, prog, "not on PATH (Debian packages make, git, dpkg)")
		}
	}
	start := time.Now()
	cmd := exec.Command(script, t.TempDir())
	cmd.Env = append(os.Environ(), "DEB_COMPRESSION=none")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.Bytes())
	}
	deb := strings.TrimSpace(string(out))
	t.Logf("built %s in %v", filepath.Base(deb), time.Since(start).Round(time.Millisecond))
	return deb
}
