package release

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/pushdeploy/pushdeploy/internal/githttp"
)

// catAll is every object of the repository dir as git cat-file reads it: type and content.
func catAll(t *testing.T, dir string) map[plumbing.Hash]decoded {
	t.Helper()
	cmd := exec.Command("git", "cat-file", "--batch-all-objects", "--batch")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), githttp.Env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git cat-file: %v", err)
	}
	all := map[plumbing.Hash]decoded{}
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			return all
		}
		f := strings.Fields(line)
		if err != nil || len(f) != 3 {
			t.Fatalf("git cat-file: bad line %q (%v)", line, err)
		}
		typ, _ := plumbing.ParseObjectType(f[1])
		size, _ := strconv.Atoi(f[2])
		data := make([]byte, size+1) // and its newline
		if _, err := io.ReadFull(r, data); err != nil {
			t.Fatal(err)
		}
		all[plumbing.NewHash(f[0])] = decoded{typ: typ, data: data[:size]}
	}
}

// TestObjectReader_MatchesGit reads every object of packs with offset and ref deltas (trees
// and blobs among them) and compares it with what git reads; the spool holds exactly the
// small blobs, each under its own id, deltas included.
func TestObjectReader_MatchesGit(t *testing.T) {
	r := history(t)
	for _, ofs := range []bool{true, false} {
		t.Run(fmt.Sprintf("ofs-delta=%v", ofs), func(t *testing.T) {
			pack := packOf(t, r, ofs)
			dir := filepath.Join(t.TempDir(), "cache.git")
			runGit(t, "", nil, "init", "-q", "--bare", dir)
			st := &cacheStorage{Storage: openStorage(dir, cacheBytes, 0), dir: dir, spool: true}
			w, err := st.PackfileWriter()
			if err != nil {
				t.Fatal(err)
			}
			w.Write(pack)
			if err := w.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			want := catAll(t, dir)
			c := &Cache{dir: dir}
			objects, err := c.reader()
			if err != nil {
				t.Fatal(err)
			}
			defer objects.close()
			deltas := map[plumbing.ObjectType]int{}
			for id, o := range want {
				typ, data, err := objects.read(id, 1<<30)
				if err != nil || typ != o.typ || !bytes.Equal(data, o.data) {
					t.Errorf("%s: got %s of %d bytes (%v), want %s of %d", id, typ, len(data), err, o.typ, len(o.data))
				}
				for _, p := range objects.packs.packs {
					if off, ok := p.idx.find(id); ok {
						var hdr [16]byte
						p.file.ReadAt(hdr[:], off)
						if et, _, _, _ := entryHeader(hdr[:]); et.IsDelta() {
							deltas[o.typ]++
						}
					}
				}
			}
			if deltas[plumbing.TreeObject] == 0 || deltas[plumbing.BlobObject] == 0 {
				t.Errorf("deltas read: %v, want trees and blobs among them", deltas)
			}

			spooled := 0
			err = filepath.WalkDir(filepath.Join(dir, spoolDir), func(path string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				spooled++
				o, ok := want[plumbing.NewHash(d.Name())]
				data, _ := os.ReadFile(path)
				if !ok || o.typ != plumbing.BlobObject || !bytes.Equal(data, o.data) {
					t.Errorf("spool: %s is not its blob (%d bytes)", d.Name(), len(data))
				}
				if fi, _ := d.Info(); fi.Mode().Perm() != 0o444 {
					t.Errorf("spool: %s has mode %v, want 0444", d.Name(), fi.Mode().Perm())
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			blobs := 0
			for _, o := range want {
				if o.typ == plumbing.BlobObject && len(o.data) <= spoolMax {
					blobs++
				}
			}
			if spooled != blobs {
				t.Errorf("spool: %d files, want the %d blobs", spooled, blobs)
			}
		})
	}
}

// TestObjectReader_Limit refuses to read whole what is larger than the caller's limit, a
// delta's target included, and reads a commit's tree.
func TestObjectReader_Limit(t *testing.T) {
	r := history(t)
	dir, err := receive(t, packOf(t, r, true))
	if err != nil {
		t.Fatal(err)
	}
	objects, err := (&Cache{dir: dir}).reader()
	if err != nil {
		t.Fatal(err)
	}
	defer objects.close()
	for _, path := range []string{"HEAD:bin.dat", "HEAD~3:a.txt"} {
		id := plumbing.NewHash(strings.TrimSpace(string(runGit(t, r.Dir(), nil, "rev-parse", path))))
		if _, _, err := objects.read(id, 1000); !errors.Is(err, errTooLarge) {
			t.Errorf("%s with a limit of 1000 bytes: got %v, want errTooLarge", path, err)
		}
	}
	head := strings.TrimSpace(string(runGit(t, r.Dir(), nil, "rev-parse", "HEAD")))
	tree, err := (&Cache{dir: dir}).tree(objects, head)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range tree.Entries {
		names = append(names, fmt.Sprintf("%s %s", e.Mode, e.Name))
	}
	if got, want := strings.Join(names, ", "), "0100644 a.txt, 0100755 bin.dat, 0040000 dir, 0100644 empty, 0120000 link"; got != want {
		t.Errorf("tree of HEAD: got %s, want %s", got, want)
	}
}
