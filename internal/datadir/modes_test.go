package datadir_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
)

func TestLayout_Mode(t *testing.T) {
	l := datadir.Layout{Root: "/var/lib/pushdeploy"}
	const sha = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		dir  string
		want os.FileMode
	}{
		{"/var/lib", datadir.ModeTraverse},
		{l.Root, datadir.ModeTraverse},
		{filepath.Join(l.Root, "apps"), datadir.ModeTraverse},
		{l.App("web"), datadir.ModeTraverse},
		{l.Releases("web"), datadir.ModeTraverse},
		{l.Release("web", sha), datadir.ModeRelease},
		{filepath.Join(l.Release("web", sha), "bin", "lib"), datadir.ModeRelease},
		{filepath.Join(l.Releases("web"), ".build-0123-1"), datadir.ModeRelease},
		{l.Objects(), datadir.ModePrivate},
		{filepath.Dir(l.Object(sha, false)), datadir.ModePrivate},
		{l.ObjectsTmp(), datadir.ModePrivate},
		{filepath.Dir(l.AdminSocket()), datadir.ModePrivate},
		{l.Cache("web"), datadir.ModePrivate},
		{filepath.Dir(l.Meta("web", sha)), datadir.ModePrivate},
		{filepath.Dir(l.DeployLog("web", "x")), datadir.ModePrivate},
		{l.Config("web"), datadir.ModePrivate},
	}
	for _, tt := range tests {
		if got := l.Mode(tt.dir); got != tt.want {
			t.Errorf("Mode(%s) = %#o, want %#o", tt.dir, got, tt.want)
		}
	}
}

// TestLayout_MkdirAll creates directories under a umask that would make every one private:
// each still gets its mode, so a dynamic user reaches its release whatever the agent's
// umask.
func TestLayout_MkdirAll(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
	l := datadir.Layout{Root: filepath.Join(t.TempDir(), "srv", "data")}
	rel := filepath.Join(l.Release("web", "abc"), "bin")
	if err := l.MkdirAll(rel); err != nil {
		t.Fatal(err)
	}
	if err := l.MkdirAll(l.Config("web")); err != nil {
		t.Fatal(err)
	}
	for dir := rel; dir != filepath.Dir(filepath.Dir(l.Root)); dir = filepath.Dir(dir) {
		checkMode(t, dir, l.Mode(dir))
	}
	checkMode(t, l.Config("web"), datadir.ModePrivate)
	if err := l.MkdirAll(rel); err != nil {
		t.Errorf("MkdirAll again: %v", err)
	}
}

// TestLayout_Prepare gives Prepare the data directory an older agent left, apps/ and
// apps/<app>/ 0750 (so a dynamic user could not reach its release), objects/ 0755 and
// units.json 0644, and checks every fixed path has its mode after.
func TestLayout_Prepare(t *testing.T) {
	l := datadir.Layout{Root: filepath.Join(t.TempDir(), "data")}
	for _, d := range []string{l.Releases("web"), l.Objects(), l.Cache("web"), l.Config("web")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(l.Objects(), 0o755)
	if err := os.WriteFile(l.Units("web"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("releases/abc", l.Current("web")); err != nil {
		t.Fatal(err)
	}
	if err := l.Prepare("web", "api"); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"web", "api"} {
		for _, d := range []string{l.Root, filepath.Dir(l.App(app)), l.App(app), l.Releases(app), l.Objects(),
			filepath.Dir(l.Meta(app, "x")), filepath.Dir(l.DeployLog(app, "x"))} {
			checkMode(t, d, l.Mode(d))
		}
	}
	checkMode(t, l.Cache("web"), datadir.ModePrivate)
	checkMode(t, l.Config("web"), datadir.ModePrivate)
	checkMode(t, l.Units("web"), datadir.ModePrivateFile)
	for _, p := range []string{l.Cache("api"), l.Config("api"), l.Units("api")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("Prepare created %s, which the agent makes only once needed", p)
		}
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", path, got, want)
	}
}
