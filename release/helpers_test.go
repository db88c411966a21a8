package release_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
)

const (
	app    = "web"
	branch = "deploy-production"
)

// fixture is a work repository pushed to a bare repository served over file://,
// an app cache fetching from it, and a store in a fresh data directory.
type fixture struct {
	t        *testing.T
	repo     *testenv.Repo
	bare     *testenv.Bare
	cache    *release.Cache
	cacheDir string
	store    *release.Store
	data     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := testenv.NewRoot(t)
	f := &fixture{
		t:    t,
		repo: testenv.NewRepo(t),
		bare: testenv.NewBare(t, root, "acme/web.git", true),
		data: t.TempDir(),
	}
	f.cacheDir = filepath.Join(t.TempDir(), "cache.git")
	cache, err := release.OpenCache(f.cacheDir, release.Remote{URL: testenv.FileURL(f.bare.Path())})
	if err != nil {
		t.Fatalf("OpenCache: %v", err)
	}
	f.cache = cache
	f.store = release.NewStore(datadir.Layout{Root: f.data})
	return f
}

// push force-pushes main to the deploy branch and fetches sha into the cache.
func (f *fixture) push(sha string) {
	f.t.Helper()
	f.repo.Push(f.bare, "main:"+branch)
	if _, err := f.cache.Fetch(f.t.Context(), sha, branch); err != nil {
		f.t.Fatalf("Fetch %s: %v", sha, err)
	}
}

// commit commits the work tree, pushes and fetches it, and returns its sha.
func (f *fixture) commit(msg string) string {
	f.t.Helper()
	sha := f.repo.Commit(msg)
	f.push(sha)
	return sha
}

// build builds release sha, which must have been fetched.
func (f *fixture) build(sha string) release.Release {
	f.t.Helper()
	r, err := f.store.Build(f.t.Context(), app, f.cache, sha, release.Info{Branch: branch, Deploy: "d-" + sha[:7]})
	if err != nil {
		f.t.Fatalf("Build %s: %v", sha, err)
	}
	return r
}

// archive extracts `git archive sha` of the work repository with the tar CLI
// into a fresh directory and returns it.
func (f *fixture) archive(sha string) string {
	f.t.Helper()
	dir := f.t.TempDir()
	git := exec.Command("git", "-C", f.repo.Dir(), "archive", "--format=tar", sha)
	var tarball, stderr bytes.Buffer
	git.Stdout, git.Stderr = &tarball, &stderr
	if err := git.Run(); err != nil {
		f.t.Fatalf("git archive %s: %v\n%s", sha, err, stderr.String())
	}
	tar := exec.Command("tar", "-x", "-f", "-", "-C", dir)
	tar.Stdin = &tarball
	if out, err := tar.CombinedOutput(); err != nil {
		f.t.Fatalf("tar -x: %v\n%s", err, out)
	}
	return dir
}

// snapshot describes every path under dir: "dir", "file exec=<bool> <content>"
// or "symlink -> <target>". Permission bits other than the owner's exec bit are
// not compared: git records only that.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			snap[rel] = "symlink -> " + target
		case fi.IsDir():
			snap[rel] = "dir"
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			exec := fi.Mode().Perm()&0o100 != 0
			snap[rel] = "file exec=" + map[bool]string{true: "true", false: "false"}[exec] + " " + string(data)
		default:
			snap[rel] = "special " + fi.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return snap
}

// compareTrees reports every path that differs between got and want; where
// names got in the messages ("release", "outside dir").
func compareTrees(t *testing.T, where string, got, want map[string]string) {
	t.Helper()
	short := func(s string) string {
		if len(s) > 80 {
			return s[:80] + "…"
		}
		return s
	}
	for _, p := range sortedKeys(want) {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%s: missing from %s, want %q", p, where, short(want[p]))
		case g != want[p]:
			t.Errorf("%s in %s: got %q, want %q", p, where, short(g), short(want[p]))
		}
	}
	for _, p := range sortedKeys(got) {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: extra in %s: %q", p, where, short(got[p]))
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// objects returns the inode and link count of every regular file under
// data/objects (the store's lock file excepted), keyed by path.
func objects(t *testing.T, data string) map[string]*syscall.Stat_t {
	t.Helper()
	out := map[string]*syscall.Stat_t{}
	dir := filepath.Join(data, "objects")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		out[p] = fi.Sys().(*syscall.Stat_t)
		return nil
	})
	if err != nil {
		t.Fatalf("walk objects: %v", err)
	}
	return out
}

// dirEntries lists the names in dir ("" entries when dir does not exist).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// storeFiles lists the objects in data's store: its regular files but the lock and the
// temporary directory's.
func storeFiles(t *testing.T, data string) []string {
	t.Helper()
	var out []string
	tmp := filepath.Join(data, "objects", "tmp") + string(filepath.Separator)
	for p := range objects(t, data) {
		if !strings.HasPrefix(p, tmp) { // not merely a path with "/tmp/" in it: t.TempDir's has
			out = append(out, p)
		}
	}
	return out
}
