package agent

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// TestAgent_dataDirModes deploys under a umask that would make everything private, then
// holds every path under data_dir to the modes datadir documents, and checks them as a
// service sees them: an unprivileged user (nobody, as a dynamic user would) reads the
// release through apps/<app>/current, and can neither list the data directory nor read the
// state, the deploy logs or the release metadata. An agent started on a data directory an
// older agent left (apps/ and apps/<app>/ 0750) fixes it.
func TestAgent_dataDirModes(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil || os.Geteuid() != 0 {
		testenv.Unavailable(t, "root and setpriv", "run a command as nobody (Debian package util-linux)")
	}
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
	dataDir := testenv.DataDirOutsideTmp(t)
	f := newFixture(t, func(c *config.Config) { c.DataDir = dataDir })
	l := f.cfg.Layout()
	f.repo.Write("bin/run", "#!/bin/sh\necho ran\n", 0o755)
	f.repo.Write("lib/deep/data.txt", "data\n", 0o644)
	f.repo.Symlink("start", "bin/run")
	if d := f.pushAndDeploy(f.repo.Commit("v1")); d.Status != state.StatusSucceeded {
		t.Fatalf("deploy: %s (%s)", d.Status, d.Error)
	}
	f.stop() // the admin socket goes with the agent; its modes are admin's (tested there)

	err := filepath.WalkDir(l.Root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(l.Root, p)
		var want os.FileMode
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			return nil
		case fi.IsDir() && p == l.Cache("web"):
			want = datadir.ModePrivate
			checkPerm(t, rel, fi, want)
			return filepath.SkipDir // go-git's own layout inside a private directory
		case fi.IsDir():
			want = l.Mode(p)
		case strings.HasPrefix(p, l.Objects()+"/") && p != l.ObjectsLock(),
			strings.HasPrefix(p, l.Releases("web")+"/"):
			want = 0o444
			if fi.Mode()&0o100 != 0 {
				want = 0o555
			}
		default: // state.db, the lock, metadata, deploy logs
			want = datadir.ModePrivateFile
		}
		checkPerm(t, rel, fi, want)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// As a service would: another user, no capability.
	asNobody := func(script string) (string, error) {
		out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c", script).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	cur := l.Current("web")
	if out, err := asNobody("cd " + cur + " && ./start && cat lib/deep/data.txt && ls bin"); err != nil || out != "ran\ndata\nrun" {
		t.Errorf("nobody running its release: %q, %v; want it to run and read it", out, err)
	}
	for _, p := range []string{l.Root, filepath.Dir(l.App("web")), l.Releases("web"), l.StateDB(),
		filepath.Dir(l.DeployLog("web", "x")), filepath.Dir(l.Meta("web", "x")), l.Objects(), l.Cache("web")} {
		if out, err := asNobody("if [ -d " + p + " ]; then ls " + p + "; else cat " + p + "; fi"); err == nil {
			t.Errorf("nobody read %s:\n%s", p, out)
		}
	}

	// An older agent's data directory: apps/ and apps/web/ 0750.
	for _, d := range []string{filepath.Dir(l.App("web")), l.App("web")} {
		if err := os.Chmod(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	f.start()
	for _, d := range []string{filepath.Dir(l.App("web")), l.App("web")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		checkPerm(t, d, fi, datadir.ModeTraverse)
	}
}

func checkPerm(t *testing.T, what string, fi os.FileInfo, want os.FileMode) {
	t.Helper()
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", what, got, want)
	}
}

// TestReachable: a release under a directory other users cannot pass is refused, naming
// that directory; one every directory lets through is not.
func TestReachable(t *testing.T) {
	base := testenv.DataDirOutsideTmp(t)
	rel := filepath.Join(base, "private", "apps", "web", "releases", "abc")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := reachable(rel); err != nil {
		t.Errorf("every directory o+x: %v", err)
	}
	if err := os.Chmod(filepath.Join(base, "private"), 0o750); err != nil {
		t.Fatal(err)
	}
	err := reachable(rel)
	if want := filepath.Join(base, "private") + " is mode 0750, without o+x"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error saying %q", err, want)
	}
}
