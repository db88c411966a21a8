package release_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/release"
)

// TestStore_Build_Cancelled cancels builds of a few thousand files at different moments:
// each either finishes with an exact release or fails leaving no release, no temporary
// directory and no object in the store, and a later build succeeds.
func TestStore_Build_Cancelled(t *testing.T) {
	f := newFixture(t)
	for i := range 1500 {
		f.repo.Write(fmt.Sprintf("d%02d/f%04d.txt", i%30, i), fmt.Sprintf("file %d\n", i), 0o644)
	}
	sha := f.commit("many")
	for _, after := range []time.Duration{0, time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond} {
		ctx, cancel := context.WithCancel(t.Context())
		if after == 0 {
			cancel()
		} else {
			time.AfterFunc(after, cancel)
		}
		_, err := f.store.Build(ctx, app, f.cache, sha, release.Info{})
		cancel()
		t.Logf("cancelled after %v: %v", after, err)
		if err == nil {
			if diffs, err := f.store.Check(t.Context(), app, sha, f.cache); err != nil || len(diffs) != 0 {
				t.Fatalf("Check of a build that finished: got %d differences, %v", len(diffs), err)
			}
			must(t, os.RemoveAll(f.store.ReleaseDir(app, sha)))
			must(t, os.RemoveAll(filepath.Join(f.data, "objects")))
			continue
		}
		if got := dirEntries(t, filepath.Join(f.data, "apps", app, "releases")); len(got) != 0 {
			t.Errorf("releases/ after a cancelled build: got %q, want empty", got)
		}
		if got := dirEntries(t, filepath.Join(f.data, "objects", "tmp")); len(got) != 0 {
			t.Errorf("objects/tmp after a cancelled build: got %q, want empty", got)
		}
		if got := storeFiles(t, f.data); len(got) != 0 {
			t.Errorf("objects/ after a cancelled build: got %d files, want none", len(got))
		}
	}
	f.build(sha)
	if diffs, err := f.store.Check(t.Context(), app, sha, f.cache); err != nil || len(diffs) != 0 {
		t.Errorf("Check: got %+v, %v, want no differences", diffs, err)
	}
}

// TestStore_Build_EmptyObject puts, where an object belongs, the empty file a crash could
// leave when objects were named before they were synced: a build writes the object again.
func TestStore_Build_EmptyObject(t *testing.T) {
	f := newFixture(t)
	f.repo.Write("a.txt", "alpha\n", 0o644)
	f.repo.Write("empty", "", 0o644)
	sha := f.commit("a")
	id := f.repo.Git("rev-parse", sha+":a.txt")
	obj := filepath.Join(f.data, "objects", id[:2], id[2:])
	must(t, os.MkdirAll(filepath.Dir(obj), 0o755))
	must(t, os.WriteFile(obj, nil, 0o444))

	rel := f.build(sha)
	if diffs, err := f.store.Check(t.Context(), app, sha, f.cache); err != nil || len(diffs) != 0 {
		t.Errorf("Check: got %+v, %v, want no differences", diffs, err)
	}
	if data, err := os.ReadFile(obj); err != nil || string(data) != "alpha\n" {
		t.Errorf("object %s: got %q, %v, want it written again", id, data, err)
	}
	a, err1 := os.Stat(obj)
	b, err2 := os.Stat(filepath.Join(rel.Dir, "a.txt"))
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		t.Errorf("a.txt: not a link to the object (%v, %v)", err1, err2)
	}
}

// TestStore_Build_Spooled builds from a fetch that spooled its blobs: a blob wanted only
// with the exec bit, one wanted both ways, one the store had already. The release is exact,
// the spool is gone, and the store holds each object once, linked by the release: a spooled
// blob the release did not link is not published.
func TestStore_Build_Spooled(t *testing.T) {
	f := newFixture(t)
	f.repo.Write("old.txt", "in the store already\n", 0o644)
	f.build(f.commit("first"))

	f.repo.Write("run", "#!/bin/sh\nexec true\n", 0o755)
	f.repo.Write("both.sh", "#!/bin/sh\necho both\n", 0o644)
	f.repo.Write("bin/both.sh", "#!/bin/sh\necho both\n", 0o755)
	f.repo.Write("plain.txt", "plain\n", 0o644)
	sha := f.commit("second")
	spool := filepath.Join(f.cacheDir, "pushdeploy-spool")
	if got := len(dirEntries(t, spool)); got == 0 {
		t.Fatalf("%s after the fetch: empty, want the blobs fetched", spool)
	}
	f.build(sha)
	if diffs, err := f.store.Check(t.Context(), app, sha, f.cache); err != nil || len(diffs) != 0 {
		t.Errorf("Check: got %+v, %v, want no differences", diffs, err)
	}
	if _, err := os.Stat(spool); !os.IsNotExist(err) {
		t.Errorf("%s after the build: %v, want it gone", spool, err)
	}
	for p, st := range objects(t, f.data) {
		if st.Nlink < 2 {
			t.Errorf("%s: linked by no release (%d links)", p, st.Nlink)
		}
	}
	// old.txt, run (exec), both.sh with and without the exec bit, plain.txt
	if got := storeFiles(t, f.data); len(got) != 5 {
		t.Errorf("store: got %d objects %q, want 5", len(got), got)
	}
}
