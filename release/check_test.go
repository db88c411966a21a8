package release_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestStore_Check(t *testing.T) {
	write := func(p, content string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			full := filepath.Join(dir, p)
			// Files are read-only hard links to objects: open them up as root
			// would, write, and put the mode back.
			fi, err := os.Lstat(full)
			if err != nil {
				t.Fatal(err)
			}
			must(t, os.Chmod(full, 0o644))
			must(t, os.WriteFile(full, []byte(content), 0o644))
			must(t, os.Chmod(full, fi.Mode().Perm()))
		}
	}
	chmod := func(p string, mode os.FileMode) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, p), mode)) }
	}
	remove := func(p string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { must(t, os.RemoveAll(filepath.Join(dir, p))) }
	}
	then := func(fs ...func(t *testing.T, dir string)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			for _, f := range fs {
				f(t, dir)
			}
		}
	}
	symlink := func(p, target string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { must(t, os.Symlink(target, filepath.Join(dir, p))) }
	}
	newFile := func(p string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { must(t, os.WriteFile(filepath.Join(dir, p), []byte("new\n"), 0o444)) }
	}
	mkdir := func(p string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { must(t, os.Mkdir(filepath.Join(dir, p), 0o755)) }
	}

	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   string // the one path reported; "" for none
	}{
		{"fresh", func(*testing.T, string) {}, ""},
		{"modified", write("a.txt", "tampered content\n"), "a.txt"},
		{"modified same size", write("a.txt", "alphA\n"), "a.txt"},
		{"modified nested", write("dir/b.txt", "b?\n"), "dir/b.txt"},
		{"deleted", remove("dir/b.txt"), "dir/b.txt"},
		{"deleted dir", remove("dir"), "dir"},
		{"extra file", newFile("extra.txt"), "extra.txt"},
		{"extra nested file", newFile("dir/extra.txt"), "dir/extra.txt"},
		{"extra dir", mkdir("extra"), "extra"},
		{"extra symlink", symlink("extra", "/etc"), "extra"},
		{"exec bit added", chmod("a.txt", 0o555), "a.txt"},
		{"exec bit removed", chmod("bin/run", 0o444), "bin/run"},
		{"made writable", chmod("a.txt", 0o644), "a.txt"},
		{"symlink retargeted", then(remove("link"), symlink("link", "/etc/passwd")), "link"},
		{"symlink replaced by file", then(remove("link"), newFile("link")), "link"},
		{"file replaced by symlink", then(remove("a.txt"), symlink("a.txt", "dir/b.txt")), "a.txt"},
		{"file replaced by dir", then(remove("a.txt"), mkdir("a.txt")), "a.txt"},
		{"dir replaced by file", then(remove("dir"), newFile("dir")), "dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.repo.Write("a.txt", "alpha\n", 0o644)
			f.repo.Write("dir/b.txt", "b\n", 0o644)
			f.repo.Write("bin/run", "#!/bin/sh\n", 0o755)
			f.repo.Write("empty", "", 0o644)
			f.repo.Symlink("link", "a.txt")
			sha := f.commit("check")
			rel := f.build(sha)

			tt.tamper(t, rel.Dir)
			diffs, err := f.store.Check(t.Context(), app, sha, f.cache)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			var paths []string
			for _, d := range diffs {
				paths = append(paths, d.Path)
				if d.Problem == "" {
					t.Errorf("difference %q: empty Problem", d.Path)
				}
			}
			var want []string
			if tt.want != "" {
				want = []string{tt.want}
			}
			if !slices.Equal(paths, want) {
				t.Errorf("Check: got %+v, want one difference at %q", diffs, tt.want)
			}
		})
	}

	t.Run("missing release", func(t *testing.T) {
		f := newFixture(t)
		sha := f.commit("empty")
		if diffs, err := f.store.Check(t.Context(), app, sha, f.cache); err == nil {
			t.Errorf("Check of a release never built: got %+v, nil error, want an error", diffs)
		}
	})
}
