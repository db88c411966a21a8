package release_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
)

type entry = testenv.Entry

func file(name, content string) entry { return entry{Name: name, Mode: "100644", Content: content} }
func link(name, target string) entry  { return entry{Name: name, Mode: "120000", Content: target} }
func dir(name string, es ...entry) entry {
	return entry{Name: name, Mode: "40000", Entries: es}
}

// deep nests dirs named name, levels deep, with a file at the bottom.
func deep(name string, levels int) entry {
	e := file("bottom.txt", "at the bottom\n")
	for range levels {
		e = dir(name, e)
	}
	return e
}

// victimDir is a directory outside every release, laid out like /etc, that hostile trees
// point their symlinks at. Nothing may ever be written into it.
func victimDir(t *testing.T) string {
	t.Helper()
	v := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(v, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(v, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	return v
}

// TestStore_Build_Hostile builds trees that git itself would never write or check out,
// made with git plumbing: every one is either refused with a clear error, leaving no
// release and nothing else behind, or laid out byte-exact (Check finds no difference).
// Whatever happens, nothing outside the release changes: not the directory the symlinks
// point at, not the rest of the data directory.
func TestStore_Build_Hostile(t *testing.T) {
	long := strings.Repeat("n", 250)
	tests := []struct {
		name    string
		entries func(victim string) []entry
		want    error  // nil: built
		wantMsg string // in the error
	}{
		{"dotdot", func(string) []entry { return []entry{dir("..", file("passwd", "x\n"))} }, release.ErrUnsafePath, `".."`},
		{".git with a trailing dot", func(string) []entry { return []entry{dir(".git.", file("config", "x\n"))} }, release.ErrUnsafePath, ""},
		{".GiT with a trailing space", func(string) []entry { return []entry{file(".GiT ", "x\n")} }, release.ErrUnsafePath, ""},
		{"gitlink deep down", func(string) []entry {
			return []entry{dir("a", dir("b", entry{Name: "vendor", Mode: "160000", Content: strings.Repeat("7", 40)}))}
		}, release.ErrSubmodule, `"a/b/vendor"`},
		{"unsafe name under a name with a newline", func(string) []entry {
			return []entry{dir("evil\nname", file("..", "x\n"))}
		}, release.ErrUnsafePath, `"evil\nname/.."`},
		{"symlink to an absolute path", func(v string) []entry {
			return []entry{link("etc", filepath.Join(v, "etc")), link("passwd", filepath.Join(v, "etc", "passwd")), link("root", "/etc")}
		}, nil, ""},
		{"symlinks up and out", func(v string) []entry {
			return []entry{link("up", "../../../../../../../../../.."+v), dir("d", link("up", "../../../../../../../../../../etc"))}
		}, nil, ""},
		{"names with newlines and bytes that are not UTF-8", func(string) []entry {
			return []entry{file("a\nb", "newline\n"), file("\xff\xfe", "latin\n"), dir("new\nline", file("\x80.txt", "x\n")), link("l\n", "\xff")}
		}, nil, ""},
		{"path of more than 4,096 bytes", func(string) []entry { return []entry{deep(long, 20)} }, nil, ""},
		{"name of 256 bytes", func(string) []entry { return []entry{file(strings.Repeat("x", 256), "x\n")} }, syscall.ENAMETOOLONG, ""},
		{"symlink target of 5,000 bytes", func(string) []entry { return []entry{link("l", strings.Repeat("a/", 2500))} }, nil, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			victim := victimDir(t)
			before := snapshot(t, victim)
			f := newFixture(t)
			sha := f.repo.CommitTree(tt.name, append([]entry{file("ok.txt", "ok\n")}, tt.entries(victim)...))
			f.push(sha)

			_, err := f.store.Build(t.Context(), app, f.cache, sha, release.Info{})
			compareTrees(t, "victim dir", snapshot(t, victim), before)
			wantErr := tt.want != nil || tt.wantMsg != ""
			switch {
			case wantErr && err == nil:
				t.Fatalf("Build: got no error, want %v %q", tt.want, tt.wantMsg)
			case !wantErr && err != nil:
				t.Fatalf("Build: %v", err)
			case err != nil:
				t.Logf("Build: %v", err)
				if tt.want != nil && !errors.Is(err, tt.want) {
					t.Errorf("Build: got %v, want %v", err, tt.want)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) || strings.ContainsAny(err.Error(), "\n\r") || len(err.Error()) > 1024 {
					t.Errorf("Build: got %q, want one line of at most 1 KiB naming %s", err, tt.wantMsg)
				}
				if got := dirEntries(t, filepath.Join(f.data, "apps", app, "releases")); len(got) != 0 {
					t.Errorf("releases/ after a refused tree: got %q, want empty", got)
				}
				if got := storeFiles(t, f.data); len(got) != 0 {
					t.Errorf("objects/ after a refused tree: got %q, want nothing", got)
				}
			default:
				diffs, err := f.store.Check(t.Context(), app, sha, f.cache)
				if err != nil || len(diffs) != 0 {
					t.Errorf("Check: got %+v, %v, want no differences", diffs, err)
				}
			}
			onlyRelease(t, f.data, sha)
		})
	}
}

// TestStore_Build_SymlinkThenFile builds a -> <victim>/etc, then in a later commit a
// directory a holding passwd, then the symlink again, as one app's successive releases,
// switching current each time: every release gets a of its own, and the victim's passwd
// is never written.
func TestStore_Build_SymlinkThenFile(t *testing.T) {
	victim := victimDir(t)
	before := snapshot(t, victim)
	f := newFixture(t)
	steps := [][]entry{
		{link("a", filepath.Join(victim, "etc"))},
		{dir("a", file("passwd", "pwned::0:0::/:/bin/sh\n"), dir("sub", file("x", "x\n")))},
		{link("a", filepath.Join(victim, "etc")), file("b", "b\n")},
		{dir("a", file("passwd", "pwned again\n"))},
	}
	for i, entries := range steps {
		sha := f.repo.CommitTree("step", entries)
		f.push(sha)
		rel := f.build(sha)
		if _, err := f.store.Activate(app, sha); err != nil {
			t.Fatalf("step %d: Activate: %v", i, err)
		}
		if diffs, err := f.store.Check(t.Context(), app, sha, f.cache); err != nil || len(diffs) != 0 {
			t.Errorf("step %d: Check: got %+v, %v, want no differences", i, diffs, err)
		}
		fi, err := os.Lstat(filepath.Join(rel.Dir, "a"))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if wantLink := i%2 == 0; (fi.Mode()&fs.ModeSymlink != 0) != wantLink {
			t.Errorf("step %d: a is %v, want a symlink %v", i, fi.Mode(), wantLink)
		}
		compareTrees(t, "victim dir", snapshot(t, victim), before)
	}
}

// onlyRelease fails the test if data holds anything but the object store, app's release
// directory of sha and its metadata (and the directories holding them).
func onlyRelease(t *testing.T, data, sha string) {
	t.Helper()
	allowed := map[string]bool{
		"objects": true, "apps": true, "apps/" + app: true, "apps/" + app + "/releases": true,
		"apps/" + app + "/meta": true, "apps/" + app + "/meta/" + sha + ".json": true,
	}
	err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		switch {
		case rel == ".":
			return nil
		case rel == "objects" || rel == "apps/"+app+"/releases/"+sha:
			return filepath.SkipDir
		case !allowed[rel]:
			t.Errorf("data dir: %s written outside the release and the store", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
