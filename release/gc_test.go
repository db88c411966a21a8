package release_test

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"testing"

	"github.com/pushdeploy/pushdeploy/release"
)

// TestStore_GC builds releases 0..4 (4 newest) of app web, each with a file
// shared by all, one unique file and one unique executable, plus a release of
// app api that holds the same content as web's release 3's unique file.
func TestStore_GC(t *testing.T) {
	tests := []struct {
		name        string
		keep        int
		current     int   // -1: none
		good, bad   []int // marks
		wantRemoved []int
	}{
		{"old current and old good survive", 2, 1, []int{0}, nil, []int{2}},
		{"newest good other than current", 2, 4, []int{0, 1, 4}, nil, []int{0, 2}},
		{"current is the only good", 2, 0, []int{0}, []int{2, 3}, []int{2}},
		{"a bad release does not push a good one out", 2, 4, nil, []int{3}, []int{0, 1}},
		{"a bad release ages out", 2, 4, []int{0, 1}, []int{2}, []int{0, 2}},
		{"no current, no marks", 2, -1, nil, nil, []int{0, 1, 2}},
		{"keep all", 5, 4, nil, nil, nil},
		{"keep zero", 0, 3, []int{1}, nil, []int{0, 2, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			shas := make([]string, 5)
			uniqueSize := func(i int) int64 { return int64(len(fmt.Sprintf("unique %d\n", i))) }
			runSize := func(i int) int64 { return int64(len(fmt.Sprintf("#!/bin/sh\necho %d\n", i))) }
			f.repo.Write("shared.txt", "shared\n", 0o644)
			for i := range shas {
				f.repo.Write("unique.txt", fmt.Sprintf("unique %d\n", i), 0o644)
				f.repo.Write("bin/run", fmt.Sprintf("#!/bin/sh\necho %d\n", i), 0o755)
				shas[i] = f.commit(fmt.Sprint(i))
				f.build(shas[i])
			}
			f.repo.Remove("bin")
			f.repo.Remove("shared.txt")
			f.repo.Remove("unique.txt")
			f.repo.Write("other.txt", "unique 3\n", 0o644)
			api := f.commit("api")
			if _, err := f.store.Build(t.Context(), "api", f.cache, api, release.Info{}); err != nil {
				t.Fatal(err)
			}

			for _, i := range tt.good {
				must(t, f.store.SetMark(app, shas[i], release.Good, ""))
			}
			for _, i := range tt.bad {
				must(t, f.store.SetMark(app, shas[i], release.Bad, "failed"))
			}
			if tt.current >= 0 {
				if _, err := f.store.Activate(app, shas[tt.current]); err != nil {
					t.Fatal(err)
				}
			}
			before := objects(t, f.data)

			res, err := f.store.GC(app, tt.keep)
			if err != nil {
				t.Fatalf("GC: %v", err)
			}

			var wantRemoved, wantKept []string
			var wantObjects int
			var wantBytes int64
			for i, sha := range shas {
				if slices.Contains(tt.wantRemoved, i) {
					wantRemoved = append(wantRemoved, sha)
					wantObjects++ // bin/run
					wantBytes += runSize(i)
					if i != 3 { // api still uses "unique 3\n"
						wantObjects++
						wantBytes += uniqueSize(i)
					}
				} else {
					wantKept = append(wantKept, sha)
				}
			}
			if len(wantKept) == 0 {
				wantObjects++ // shared.txt
				wantBytes += int64(len("shared\n"))
			}
			gotRemoved := append([]string(nil), res.Removed...)
			sort.Strings(gotRemoved)
			sort.Strings(wantRemoved)
			if !slices.Equal(gotRemoved, wantRemoved) {
				t.Errorf("Removed: got %s, want %s", short(gotRemoved), short(wantRemoved))
			}
			list, err := f.store.List(app)
			if err != nil {
				t.Fatal(err)
			}
			var gotKept []string
			for _, r := range list {
				gotKept = append(gotKept, r.SHA)
			}
			sort.Strings(gotKept)
			sort.Strings(wantKept)
			if !slices.Equal(gotKept, wantKept) {
				t.Errorf("List after GC: got %s, want %s", short(gotKept), short(wantKept))
			}
			for _, sha := range wantRemoved {
				if _, err := os.Lstat(f.store.ReleaseDir(app, sha)); !os.IsNotExist(err) {
					t.Errorf("release %.7s: got %v, want removed", sha, err)
				}
			}
			if tt.current >= 0 {
				if cur, err := f.store.Current(app); err != nil || cur != shas[tt.current] {
					t.Errorf("Current after GC: got %q, %v, want %q", cur, err, shas[tt.current])
				}
			}

			after := objects(t, f.data)
			if got := len(before) - len(after); got != wantObjects || res.Objects != wantObjects {
				t.Errorf("objects removed: got %d on disk, %d reported, want %d", got, res.Objects, wantObjects)
			}
			if res.Bytes != wantBytes {
				t.Errorf("Bytes: got %d, want %d", res.Bytes, wantBytes)
			}
			for p, st := range after {
				if st.Nlink < 2 {
					t.Errorf("object %s: no release links it, want it removed", p)
				}
			}
			// What is left is intact.
			for _, sha := range wantKept {
				if diffs, err := f.store.Check(t.Context(), app, sha, f.cache); err != nil || len(diffs) != 0 {
					t.Errorf("Check %.7s after GC: got %+v, %v, want no differences", sha, diffs, err)
				}
			}
			if diffs, err := f.store.Check(t.Context(), "api", api, f.cache); err != nil || len(diffs) != 0 {
				t.Errorf("Check api after GC: got %+v, %v, want no differences", diffs, err)
			}
		})
	}
}
