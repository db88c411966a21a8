package release_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
)

// writeRichTree fills the work tree with what a release must reproduce
// exactly: exec bits, symlinks of every kind, nesting, odd names, an empty
// file, identical content under different modes, binary and CRLF content.
func writeRichTree(r *testenv.Repo) {
	rng := rand.New(rand.NewChaCha8([32]byte{2}))
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	r.Write("README.md", "hello\n", 0o644)
	r.Write(".gitignore", "*.log\n", 0o644)
	r.Write(".hidden", "dotfile\n", 0o644)
	r.Write("bin/start", "#!/bin/sh\nexec app\n", 0o755)
	r.Write("empty", "", 0o644)
	r.Write("empty-exec", "", 0o755)
	r.Write("same.txt", "same\n", 0o644)
	r.Write("same.sh", "same\n", 0o755)
	r.Write("copy/same.txt", "same\n", 0o644)
	r.Write("a/b/c/d/e/deep.txt", "deep\n", 0o644)
	r.Write("with space.txt", "space\n", 0o644)
	r.Write("ünïcode-名前.txt", "unicode\n", 0o644)
	r.Write("-dash", "dash\n", 0o644)
	r.Write("crlf.txt", "a\r\nb\r\n", 0o644)
	r.Write("big.bin", string(big), 0o644)
	r.Symlink("rel-link", "README.md")
	r.Symlink("dir-link", "a/b")
	r.Symlink("abs-link", "/etc/passwd")
	r.Symlink("dangling", "nope/missing")
	r.Symlink("up-link", "../outside")
	r.Symlink("bin/start-link", "../bin/start")
}

// TestStore_Build_MatchesArchive compares each release with `git archive` of
// its commit, extracted by tar: same paths, content, exec bits and symlink
// targets, nothing extra. The second commit changes modes of files whose
// objects the first release links, so the first must still match afterwards.
func TestStore_Build_MatchesArchive(t *testing.T) {
	f := newFixture(t)
	writeRichTree(f.repo)
	first := f.commit("rich")

	f.repo.Remove("README.md")
	f.repo.Write("same.txt", "same\n", 0o755)
	f.repo.Write("bin/start", "#!/bin/sh\nexec app\n", 0o644)
	f.repo.Symlink("abs-link", "/etc/hostname")
	f.repo.Write("new/file.txt", "new\n", 0o644)
	f.repo.Remove("a/b/c")
	second := f.commit("changes")

	r1 := f.build(first)
	r2 := f.build(second)
	for _, tt := range []struct {
		name string
		rel  release.Release
	}{{"first", r1}, {"second", r2}} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rel.Dir != f.store.ReleaseDir(app, tt.rel.SHA) {
				t.Errorf("Dir: got %q, want %q", tt.rel.Dir, f.store.ReleaseDir(app, tt.rel.SHA))
			}
			if want := filepath.Join(f.data, "apps", app, "releases", tt.rel.SHA); tt.rel.Dir != want {
				t.Errorf("Dir: got %q, want %q", tt.rel.Dir, want)
			}
			compareTrees(t, "release", snapshot(t, tt.rel.Dir), snapshot(t, f.archive(tt.rel.SHA)))
		})
	}
}

func TestStore_Build_HardLinks(t *testing.T) {
	f := newFixture(t)
	writeRichTree(f.repo)
	sha := f.commit("rich")
	rel := f.build(sha)

	// Another app with one identical file shares the object.
	other, err := f.store.Build(t.Context(), "api", f.cache, sha, release.Info{})
	if err != nil {
		t.Fatalf("Build api: %v", err)
	}

	objs := objects(t, f.data)
	inodes := map[uint64]string{}
	for p, st := range objs {
		inodes[st.Ino] = p
	}
	ino := func(dir, p string) uint64 {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}

	files := 0
	for p, desc := range snapshot(t, rel.Dir) {
		if !strings.HasPrefix(desc, "file ") {
			continue
		}
		files++
		full := filepath.Join(rel.Dir, p)
		fi, err := os.Lstat(full)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o222 != 0 {
			t.Errorf("%s: got mode %v, want no write bits", p, perm)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if _, ok := inodes[st.Ino]; !ok {
			t.Errorf("%s: inode %d is not an object under objects/", p, st.Ino)
		}
		if st.Nlink < 3 { // the object, this release and app api's release
			t.Errorf("%s: got %d links, want >= 3", p, st.Nlink)
		}
		if got, want := ino(other.Dir, p), st.Ino; got != want {
			t.Errorf("%s: api's inode %d, web's %d, want the same", p, got, want)
		}
	}
	if files == 0 {
		t.Fatal("release has no regular files")
	}
	if ino(rel.Dir, "same.txt") != ino(rel.Dir, "copy/same.txt") {
		t.Errorf("same.txt and copy/same.txt: different inodes, want one object")
	}
	if ino(rel.Dir, "same.txt") == ino(rel.Dir, "same.sh") {
		t.Errorf("same.txt (0644) and same.sh (0755): one inode, want two objects")
	}
	for p, st := range objs {
		if m := st.Mode & 0o7777; m&0o222 != 0 {
			t.Errorf("object %s: got mode %o, want read-only", p, m)
		}
	}
}

// TestStore_Build_Unsafe builds commits with names git itself would never
// check out. Build must refuse them and leave neither the release nor a
// temporary directory behind.
func TestStore_Build_Unsafe(t *testing.T) {
	file := func(name string) testenv.Entry { return testenv.Entry{Name: name, Mode: "100644", Content: "x\n"} }
	dir := func(name string, es ...testenv.Entry) testenv.Entry {
		return testenv.Entry{Name: name, Mode: "40000", Entries: es}
	}
	gitlink := func(name string) testenv.Entry {
		return testenv.Entry{Name: name, Mode: "160000", Content: strings.Repeat("5", 40)}
	}
	tests := []struct {
		name    string
		entries []testenv.Entry
		want    error
	}{
		{"dotdot file", []testenv.Entry{file("..")}, release.ErrUnsafePath},
		{"dotdot dir", []testenv.Entry{dir("..", file("escaped"))}, release.ErrUnsafePath},
		{"dot", []testenv.Entry{file(".")}, release.ErrUnsafePath},
		{".git dir", []testenv.Entry{dir(".git", file("config"), dir("hooks", file("post-checkout")))}, release.ErrUnsafePath},
		{".git file", []testenv.Entry{file(".git")}, release.ErrUnsafePath},
		{".GIT", []testenv.Entry{dir(".GIT", file("config"))}, release.ErrUnsafePath},
		{".Git", []testenv.Entry{file(".Git")}, release.ErrUnsafePath},
		{"slash", []testenv.Entry{file("a/b")}, release.ErrUnsafePath},
		{"dotdot slash", []testenv.Entry{file("../../escaped")}, release.ErrUnsafePath},
		{"leading slash", []testenv.Entry{file("/tmp/escaped")}, release.ErrUnsafePath},
		{"nested dotdot", []testenv.Entry{dir("sub", file("ok"), file(".."))}, release.ErrUnsafePath},
		{"nested .git", []testenv.Entry{dir("sub", dir(".git", file("config")))}, release.ErrUnsafePath},
		{"gitlink", []testenv.Entry{gitlink("vendor")}, release.ErrSubmodule},
		{"nested gitlink", []testenv.Entry{dir("lib", file("ok"), gitlink("vendor"))}, release.ErrSubmodule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			entries := append([]testenv.Entry{file("aaa.txt"), dir("d", file("b.txt"))}, tt.entries...)
			sha := f.repo.CommitTree(tt.name, entries)
			f.push(sha)

			rel, err := f.store.Build(t.Context(), app, f.cache, sha, release.Info{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Build: got %+v, %v, want %v", rel, err, tt.want)
			}
			releases := filepath.Join(f.data, "apps", app, "releases")
			if _, err := os.Lstat(filepath.Join(releases, sha)); !os.IsNotExist(err) {
				t.Errorf("releases/%s: got %v, want not exist", sha, err)
			}
			if got := dirEntries(t, releases); len(got) != 0 {
				t.Errorf("releases/: got %q, want empty (no temporary directories)", got)
			}
			if got := dirEntries(t, filepath.Join(f.data, "objects", "tmp")); len(got) != 0 {
				t.Errorf("objects/tmp: got %q, want empty", got)
			}
			if list, err := f.store.List(app); err != nil || len(list) != 0 {
				t.Errorf("List: got %+v, %v, want none", list, err)
			}
			if cur, err := f.store.Current(app); err != nil || cur != "" {
				t.Errorf("Current: got %q, %v, want none", cur, err)
			}
		})
	}
}

// TestStore_Build_SymlinkEscape builds trees that would make a naive writer
// follow a symlink out of the release. The directory the symlinks point at
// must be untouched whatever Build does.
func TestStore_Build_SymlinkEscape(t *testing.T) {
	type entry = testenv.Entry
	tests := []struct {
		name    string
		entries func(target string) []entry
		wantErr bool
	}{
		{"symlink to outside dir", func(target string) []entry {
			return []entry{
				{Name: "link", Mode: "120000", Content: target},
				{Name: "rel-link", Mode: "120000", Content: "../../../../../../../../.." + target},
				{Name: "a.txt", Mode: "100644", Content: "a\n"},
				{Name: "dir", Mode: "40000", Entries: []entry{{Name: "b.txt", Mode: "100644", Content: "b\n"}}},
			}
		}, false},
		{"dir through symlink", func(target string) []entry {
			return []entry{
				{Name: "link", Mode: "120000", Content: target},
				{Name: "link", Mode: "40000", Entries: []entry{{Name: "pwned", Mode: "100755", Content: "pwned\n"}}},
			}
		}, true},
		{"dir through relative symlink", func(target string) []entry {
			return []entry{
				{Name: "link", Mode: "120000", Content: "../../../../../../../../.." + target},
				{Name: "link", Mode: "40000", Entries: []entry{{Name: "pwned", Mode: "100644", Content: "pwned\n"}}},
			}
		}, true},
		{"file through symlink", func(target string) []entry {
			return []entry{
				{Name: "victim", Mode: "120000", Content: filepath.Join(target, "victim")},
				{Name: "victim", Mode: "100644", Content: "pwned\n"},
			}
		}, true},
		{"nested dir through symlink", func(target string) []entry {
			return []entry{
				{Name: "d", Mode: "40000", Entries: []entry{{Name: "l", Mode: "120000", Content: target}}},
				{Name: "d", Mode: "40000", Entries: []entry{{Name: "l", Mode: "40000", Entries: []entry{{Name: "pwned", Mode: "100644", Content: "pwned\n"}}}}},
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := t.TempDir()
			if err := os.WriteFile(filepath.Join(target, "victim"), []byte("orig\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, target)

			f := newFixture(t)
			sha := f.repo.CommitTree(tt.name, tt.entries(target))
			f.push(sha)
			rel, err := f.store.Build(t.Context(), app, f.cache, sha, release.Info{})

			t.Logf("Build: %v", err)
			compareTrees(t, "outside dir", snapshot(t, target), before)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("Build: got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if got := dirEntries(t, filepath.Join(f.data, "apps", app, "releases")); len(got) != 0 {
					t.Errorf("releases/ after failed Build: got %q, want empty", got)
				}
				return
			}
			if got, err := os.Readlink(filepath.Join(rel.Dir, "link")); err != nil || got != target {
				t.Errorf("link: got %q, %v, want %q", got, err, target)
			}
			compareTrees(t, "release", snapshot(t, rel.Dir), snapshot(t, f.archive(sha)))
		})
	}
}

func TestStore_Build_Idempotent(t *testing.T) {
	f := newFixture(t)
	f.repo.Write("a.txt", "a\n", 0o644)
	sha := f.commit("a")
	r1 := f.build(sha)
	fi1, err := os.Stat(r1.Dir)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := f.store.Build(t.Context(), app, f.cache, sha, release.Info{Branch: "other", Deploy: "other"})
	if err != nil {
		t.Fatalf("second Build: %v", err)
	}
	fi2, err := os.Stat(r2.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fi1, fi2) {
		t.Errorf("second Build replaced the release directory, want it unchanged")
	}
	if r2.SHA != r1.SHA || r2.Dir != r1.Dir || r2.Branch != r1.Branch || r2.Deploy != r1.Deploy || !r2.Created.Equal(r1.Created) {
		t.Errorf("second Build: got %+v, want %+v", r2, r1)
	}
	if list, err := f.store.List(app); err != nil || len(list) != 1 {
		t.Errorf("List: got %d releases, %v, want 1", len(list), err)
	}
}
