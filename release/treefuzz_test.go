package release_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/release"
)

// The bytes of a fuzzed tree: entries separated by NUL (which no tree name can hold: git
// ends a name with it); in an entry, the first byte picks the mode from fuzzModes, 0x01
// separates the directories on the way to the entry's name, and 0x02 starts a symlink's
// target or a file's content. "@V" in a target is the victim directory's path.
const (
	fuzzEntrySep = "\x00"
	fuzzDirSep   = "\x01"
	fuzzBodySep  = "\x02"
)

var fuzzModes = []filemode.FileMode{filemode.Regular, filemode.Executable, filemode.Symlink, filemode.Dir,
	filemode.Submodule, filemode.Deprecated, 0o100600, 0o777}

// fuzzEntry encodes one entry of a fuzzed tree: its mode (an index in fuzzModes), its
// directories and name, and its target or content.
func fuzzEntry(mode int, path []string, body string) string {
	return string(rune('0'+mode)) + strings.Join(path, fuzzDirSep) + fuzzBodySep + body
}

// FuzzStore_BuildTree builds whole trees made from fuzzed bytes with go-git's plumbing,
// written straight into an app's cache (git itself would refuse to write most of them),
// through Store.Build into a fresh data directory. Whatever the tree, nothing lands
// outside the release: the directory its symlinks point at is unchanged, the data
// directory holds only the store and the release, and a refused tree leaves no release
// and no object, with an error on one line. A tree that builds is the commit's tree
// exactly (Check finds no difference). go-git reads a tree's modes as git does (canon_mode):
// 100600 is a regular file, and a mode of no known type a gitlink, which is refused.
func FuzzStore_BuildTree(f *testing.F) {
	for _, n := range release.TreeNameSeeds {
		f.Add([]byte(fuzzEntry(0, []string{n}, "x\n")))
		f.Add([]byte(fuzzEntry(3, []string{n, "passwd"}, "pwned\n")))
	}
	hostile := [][]string{
		{fuzzEntry(2, []string{"etc"}, "@V/etc"), fuzzEntry(0, []string{"etc", "passwd"}, "pwned\n")},
		{fuzzEntry(2, []string{"up"}, "../../../../../../../../../..@V"), fuzzEntry(2, []string{"d", "up"}, "../../../../etc")},
		{fuzzEntry(0, []string{"a\nb"}, "newline\n"), fuzzEntry(0, []string{"\xff\xfe"}, "latin\n"), fuzzEntry(2, []string{"l\n"}, "\xff")},
		{fuzzEntry(4, []string{"a", "b", "vendor"}, ""), fuzzEntry(1, []string{"run"}, "#!/bin/sh\n")},
		{fuzzEntry(3, []string{"evil\nname", ".."}, ""), fuzzEntry(0, []string{"dup"}, "1"), fuzzEntry(3, []string{"dup", "x"}, "2")},
		{fuzzEntry(2, []string{"l"}, strings.Repeat("a/", 2500))},
		{fuzzEntry(0, []string{strings.Repeat("d", 200), strings.Repeat("e", 200), "f"}, "deep\n")},
		{fuzzEntry(6, []string{"private"}, "x"), fuzzEntry(7, []string{"odd"}, "x")},
	}
	for _, es := range hostile {
		f.Add([]byte(strings.Join(es, fuzzEntrySep)))
	}
	f.Fuzz(func(t *testing.T, spec []byte) {
		top := t.TempDir()
		victim := filepath.Join(top, "victim")
		if err := os.MkdirAll(filepath.Join(victim, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		must(t, os.WriteFile(filepath.Join(victim, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
		before := snapshot(t, victim)
		data := filepath.Join(top, "data")
		c, err := release.OpenCache(filepath.Join(top, "cache.git"), release.Remote{URL: "file://" + filepath.Join(top, "none")})
		if err != nil {
			t.Fatal(err)
		}
		sha := writeFuzzTree(t, filepath.Join(top, "cache.git"), string(spec), victim)
		store := release.NewStore(datadir.Layout{Root: data})

		rel, err := store.Build(t.Context(), app, c, sha, release.Info{})
		compareTrees(t, "victim dir", snapshot(t, victim), before)
		if ents := strings.Join(dirEntries(t, top), " "); ents != "cache.git data victim" && ents != "cache.git victim" {
			t.Fatalf("the test's directory after Build: %q, want cache.git, data and victim only", ents)
		}
		if err != nil {
			t.Logf("Build: %v", err)
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || len(msg) > 1024 {
				t.Fatalf("Build: error %q: want one line of at most 1 KiB", msg)
			}
			if got := dirEntries(t, filepath.Join(data, "apps", app, "releases")); len(got) != 0 {
				t.Fatalf("releases/ after %v: got %q, want empty", err, got)
			}
			if got := storeFiles(t, data); len(got) != 0 {
				t.Fatalf("objects/ after %v: got %q, want nothing", err, got)
			}
			return
		}
		if rel.Dir != store.ReleaseDir(app, sha) {
			t.Fatalf("Build: release in %s, want %s", rel.Dir, store.ReleaseDir(app, sha))
		}
		if diffs, err := store.Check(t.Context(), app, sha, c); err != nil || len(diffs) != 0 {
			t.Fatalf("Check: got %+v, %v, want no differences", diffs, err)
		}
		onlyRelease(t, data, sha)
	})
}

// fuzzNode is a tree being made from a fuzzed spec: its entries in order, duplicates kept.
type fuzzNode struct {
	name    string
	mode    filemode.FileMode
	body    string
	entries []*fuzzNode
}

// writeFuzzTree writes the tree spec describes, and a commit of it, into the bare
// repository dir with go-git's plumbing, and returns the commit's id. At most 16 entries,
// 4 directories deep, are taken from spec.
func writeFuzzTree(t *testing.T, dir, spec, victim string) string {
	t.Helper()
	st := filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRUDefault())
	defer st.Close()
	root := &fuzzNode{mode: filemode.Dir}
	for i, raw := range strings.Split(spec, fuzzEntrySep) {
		if i == 16 || raw == "" {
			break
		}
		mode := fuzzModes[int(raw[0])%len(fuzzModes)]
		path, body, _ := strings.Cut(raw[1:], fuzzBodySep)
		body = strings.ReplaceAll(body, "@V", victim)
		names := strings.Split(path, fuzzDirSep)
		if len(names) > 5 {
			names = names[len(names)-5:]
		}
		parent := root
		for _, d := range names[:len(names)-1] {
			var next *fuzzNode
			for _, e := range parent.entries {
				if e.name == d && e.mode == filemode.Dir {
					next = e
				}
			}
			if next == nil {
				next = &fuzzNode{name: d, mode: filemode.Dir}
				parent.entries = append(parent.entries, next)
			}
			parent = next
		}
		parent.entries = append(parent.entries, &fuzzNode{name: names[len(names)-1], mode: mode, body: body})
	}
	tree := writeFuzzNode(t, st, root)
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sig := object.Signature{Name: "fuzz", Email: "fuzz@pushdeploy.invalid", When: when}
	commit := &object.Commit{Author: sig, Committer: sig, Message: "fuzz\n", TreeHash: tree}
	return storeObject(t, st, commit.Encode).String()
}

// writeFuzzNode writes n's tree (and its blobs and subtrees) and returns its id. A
// submodule's id is its body's blob id: a commit the repository does not have, as a real
// gitlink's.
func writeFuzzNode(t *testing.T, st *filesystem.Storage, n *fuzzNode) plumbing.Hash {
	t.Helper()
	var tr bytes.Buffer
	for _, e := range n.entries {
		var h plumbing.Hash
		if e.mode == filemode.Dir {
			h = writeFuzzNode(t, st, e)
		} else {
			h = storeBlob(t, st, e.body)
		}
		// As git writes a tree, but in the spec's order and with duplicates kept: go-git's
		// Tree.Encode refuses entries that are not sorted.
		fmt.Fprintf(&tr, "%o %s\x00", uint32(e.mode), e.name)
		tr.Write(h[:])
	}
	return storeObject(t, st, func(o plumbing.EncodedObject) error {
		o.SetType(plumbing.TreeObject)
		return writeAll(o, tr.Bytes())
	})
}

// storeBlob stores a blob of content.
func storeBlob(t *testing.T, st *filesystem.Storage, content string) plumbing.Hash {
	t.Helper()
	return storeObject(t, st, func(o plumbing.EncodedObject) error {
		o.SetType(plumbing.BlobObject)
		return writeAll(o, []byte(content))
	})
}

func writeAll(o plumbing.EncodedObject, data []byte) error {
	w, err := o.Writer()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Close()
}

// storeObject encodes an object with encode and stores it loose.
func storeObject(t *testing.T, st *filesystem.Storage, encode func(plumbing.EncodedObject) error) plumbing.Hash {
	t.Helper()
	o := st.NewEncodedObject()
	if err := encode(o); err != nil {
		t.Fatalf("encode: %v", err)
	}
	h, err := st.SetEncodedObject(o)
	if err != nil {
		t.Fatalf("store object: %v", err)
	}
	return h
}
