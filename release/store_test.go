package release_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
)

func TestStore_Activate(t *testing.T) {
	f := newFixture(t)
	shas := make([]string, 3)
	for i := range shas {
		f.repo.Write("VERSION", fmt.Sprintf("%d\n", i), 0o644)
		shas[i] = f.commit(fmt.Sprint(i))
		f.build(shas[i])
	}
	if cur, err := f.store.Current(app); err != nil || cur != "" {
		t.Fatalf("Current before any Activate: got %q, %v, want \"\"", cur, err)
	}
	current := filepath.Join(f.data, "apps", app, "current")
	steps := []struct {
		sha, wantPrev string
	}{
		{shas[0], ""},
		{shas[1], shas[0]},
		{shas[2], shas[1]},
		{shas[0], shas[2]}, // rollback
		{shas[0], shas[0]}, // again: no change
	}
	for i, st := range steps {
		prev, err := f.store.Activate(app, st.sha)
		if err != nil || prev != st.wantPrev {
			t.Fatalf("step %d: Activate(%.7s): got %q, %v, want %q", i, st.sha, prev, err, st.wantPrev)
		}
		if cur, err := f.store.Current(app); err != nil || cur != st.sha {
			t.Errorf("step %d: Current: got %q, %v, want %q", i, cur, err, st.sha)
		}
		fi, err := os.Lstat(current)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("step %d: current: got %v, %v, want a symlink", i, fi, err)
		}
		got, err := filepath.EvalSymlinks(current)
		want, _ := filepath.EvalSymlinks(f.store.ReleaseDir(app, st.sha))
		if err != nil || got != want {
			t.Errorf("step %d: current resolves to %q, %v, want %q", i, got, err, want)
		}
		list, err := f.store.List(app)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			if r.Current != (r.SHA == st.sha) {
				t.Errorf("step %d: List: %.7s Current %v, want %v", i, r.SHA, r.Current, r.SHA == st.sha)
			}
		}
	}
	if data, err := os.ReadFile(filepath.Join(current, "VERSION")); err != nil || string(data) != "0\n" {
		t.Errorf("current/VERSION: got %q, %v, want %q", data, err, "0\n")
	}
	// Nothing but current itself is left in the app directory by the switches.
	for _, name := range dirEntries(t, filepath.Join(f.data, "apps", app)) {
		if strings.HasPrefix(name, ".") {
			t.Errorf("apps/%s: leftover %q after Activate", app, name)
		}
	}

	missing := strings.Repeat("c", 40)
	if _, err := f.store.Activate(app, missing); err == nil {
		t.Errorf("Activate of a release that does not exist: got nil error, want an error")
	}
	if cur, _ := f.store.Current(app); cur != shas[0] {
		t.Errorf("Current after failed Activate: got %q, want %q", cur, shas[0])
	}
}

func TestStore_List(t *testing.T) {
	f := newFixture(t)
	var shas []string
	for i := range 3 {
		f.repo.Write("VERSION", fmt.Sprintf("%d\n", i), 0o644)
		sha := f.commit(fmt.Sprint(i))
		f.build(sha)
		shas = append(shas, sha)
	}
	if err := f.store.SetMark(app, shas[0], release.Good, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SetMark(app, shas[2], release.Bad, "health check failed"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Activate(app, shas[0]); err != nil {
		t.Fatal(err)
	}
	list, err := f.store.List(app)
	if err != nil {
		t.Fatal(err)
	}
	want := []release.Release{
		{SHA: shas[2], Mark: release.Bad, Reason: "health check failed"},
		{SHA: shas[1], Mark: release.Unmarked},
		{SHA: shas[0], Mark: release.Good, Current: true},
	}
	if len(list) != len(want) {
		t.Fatalf("List: got %d releases, want %d", len(list), len(want))
	}
	for i, w := range want {
		g := list[i]
		if g.SHA != w.SHA || g.Mark != w.Mark || g.Reason != w.Reason || g.Current != w.Current {
			t.Errorf("List[%d]: got sha %.7s mark %q reason %q current %v, want sha %.7s mark %q reason %q current %v",
				i, g.SHA, g.Mark, g.Reason, g.Current, w.SHA, w.Mark, w.Reason, w.Current)
		}
		if g.Branch != branch || g.Deploy != "d-"+w.SHA[:7] || g.Dir != f.store.ReleaseDir(app, w.SHA) || g.Created.IsZero() {
			t.Errorf("List[%d]: got branch %q deploy %q dir %q created %v, want %q %q %q and a time",
				i, g.Branch, g.Deploy, g.Dir, g.Created, branch, "d-"+w.SHA[:7], f.store.ReleaseDir(app, w.SHA))
		}
	}
	if list, err := f.store.List("nothing"); err != nil || len(list) != 0 {
		t.Errorf("List of an app without releases: got %v, %v, want none", list, err)
	}
	if err := f.store.SetMark(app, strings.Repeat("d", 40), release.Good, ""); err == nil {
		t.Errorf("SetMark of a missing release: got nil error, want an error")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func short(shas []string) string {
	var s []string
	for _, sha := range shas {
		s = append(s, sha[:7])
	}
	return "[" + strings.Join(s, " ") + "]"
}

// TestStore_Recover plants what a kill -9 leaves behind in the middle of a fetch (a pack
// being received, an index being written, an index whose pack never took its name), a
// build (its temporary release directory and objects) and checks that Recover removes all
// of it and nothing else: the release and the cache still work.
func TestStore_Recover(t *testing.T) {
	f := newFixture(t)
	f.repo.Write("VERSION", "1\n", 0o644)
	f.repo.Write("bin/run", "#!/bin/sh\n", 0o755)
	sha := f.commit("one")
	dirs := datadir.Layout{Root: f.data}
	remote := release.Remote{URL: testenv.FileURL(f.bare.Path())}
	cache, err := release.OpenCache(dirs.Cache(app), remote)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Fetch(t.Context(), sha, branch); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Build(t.Context(), app, cache, sha, release.Info{}); err != nil {
		t.Fatal(err)
	}
	pack := filepath.Join(dirs.Cache(app), "objects", "pack")
	kept := dirEntries(t, pack)
	planted := []string{
		filepath.Join(pack, "tmp_pack_3934706564"),
		filepath.Join(pack, "tmp_idx_1234"),
		filepath.Join(pack, "pack-"+strings.Repeat("ab", 20)+".idx"),
		filepath.Join(dirs.Releases(app), ".build-"+sha[:12]+"-42", "bin", "run"),
		filepath.Join(dirs.ObjectsTmp(), "build-42", "a", strings.Repeat("a", 40)),
		filepath.Join(dirs.Releases(app), ".remove-"+sha[:12]+"-7", "VERSION"), // a gc's
		dirs.Meta(app, strings.Repeat("c", 40)),                                // of no release
		filepath.Join(dirs.MetaDir(app), "."+sha+".json.tmp-99"),
		filepath.Join(dirs.App(app), ".current.tmp-link"),
		filepath.Join(dirs.App(app), ".units.json.tmp-5"),
	}
	for _, p := range planted {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("half"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.store.Recover(app); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	for _, p := range planted {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s: still there after Recover (%v)", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dirs.Releases(app), ".build-"+sha[:12]+"-42")); !os.IsNotExist(err) {
		t.Errorf("temporary release directory still there after Recover (%v)", err)
	}
	if got := dirEntries(t, pack); strings.Join(got, " ") != strings.Join(kept, " ") {
		t.Errorf("pack directory after Recover: got %q, want %q", got, kept)
	}
	cache, err = release.OpenCache(dirs.Cache(app), remote)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirs.Meta(app, sha)); err != nil {
		t.Errorf("the release's metadata: %v", err)
	}
	if diffs, err := f.store.Check(t.Context(), app, sha, cache); err != nil || len(diffs) > 0 {
		t.Errorf("release after Recover: %v, %v", diffs, err)
	}
	f.repo.Write("VERSION", "2\n", 0o644)
	next := f.commit("two")
	if _, err := cache.Fetch(t.Context(), next, branch); err != nil {
		t.Errorf("fetch after Recover: %v", err)
	}
	// Nothing to recover is no error, an app never deployed neither.
	if err := f.store.Recover(app); err != nil {
		t.Errorf("Recover again: %v", err)
	}
	if err := f.store.Recover("never-deployed"); err != nil {
		t.Errorf("Recover of an app never deployed: %v", err)
	}
}
