package release

import (
	"bytes"
	"crypto/sha1"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/githttp"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// history makes a repository whose packs hold deltas: text files rewritten a little in
// each of many commits, a binary file, an empty one, a symlink.
func history(t *testing.T) *testenv.Repo {
	t.Helper()
	r := testenv.NewRepo(t)
	var text strings.Builder
	for i := range 400 {
		fmt.Fprintf(&text, "line %d of a text that changes a little in every commit\n", i)
	}
	r.Write("empty", "", 0o644)
	r.Symlink("link", "a.txt")
	bin := bytes.Repeat([]byte{0, 1, 2, 3, 0xff}, 20000)
	for c := range 30 {
		body := strings.Replace(text.String(), fmt.Sprintf("line %d ", c*7), fmt.Sprintf("LINE %d (commit %d) ", c*7, c), 1)
		r.Write("a.txt", body, 0o644)
		r.Write(fmt.Sprintf("dir/b%d.txt", c%3), body+fmt.Sprint(c), 0o644)
		bin[c*100] = byte(c)
		r.Write("bin.dat", string(bin), 0o755)
		r.Commit(fmt.Sprint(c))
	}
	return r
}

// packOf is the pack of r's whole history as git pack-objects makes it, its deltas
// offset deltas or ref deltas.
func packOf(t *testing.T, r *testenv.Repo, ofs bool) []byte {
	t.Helper()
	args := []string{"pack-objects", "--revs", "--stdout", "-q"}
	if ofs {
		args = append(args, "--delta-base-offset")
	}
	return runGit(t, r.Dir(), []byte("HEAD\n"), args...)
}

func runGit(t *testing.T, dir string, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), githttp.Env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// receive feeds pack to a fresh cache's PackfileWriter in small writes, as a fetch does,
// and returns the cache's directory and Close's error.
func receive(t *testing.T, pack []byte) (string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cache.git")
	runGit(t, "", nil, "init", "-q", "--bare", dir)
	st := &cacheStorage{Storage: openStorage(dir, cacheBytes, 0), dir: dir}
	w, err := st.PackfileWriter()
	if err != nil {
		t.Fatal(err)
	}
	for len(pack) > 0 {
		n := min(len(pack), 1000)
		if _, err := w.Write(pack[:n]); err != nil {
			break // the indexer gave up: Close says why
		}
		pack = pack[n:]
	}
	return dir, w.Close()
}

// TestIndexer_MatchesIndexPack indexes packs with offset and ref deltas as a fetch receives
// them: the index is byte for byte the one git index-pack writes for the same pack.
func TestIndexer_MatchesIndexPack(t *testing.T) {
	r := history(t)
	for _, ofs := range []bool{true, false} {
		t.Run(fmt.Sprintf("ofs-delta=%v", ofs), func(t *testing.T) {
			pack := packOf(t, r, ofs)
			dir, err := receive(t, pack)
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
			idxs, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "pack-*.idx"))
			if len(idxs) != 1 {
				t.Fatalf("objects/pack: got indexes %q, want one", idxs)
			}
			packFile := strings.TrimSuffix(idxs[0], ".idx") + ".pack"
			if got, err := os.ReadFile(packFile); err != nil || !bytes.Equal(got, pack) {
				t.Fatalf("%s: not the pack received (%v)", packFile, err)
			}
			want := filepath.Join(t.TempDir(), "git.idx")
			runGit(t, "", nil, "index-pack", "-o", want, packFile)
			got, _ := os.ReadFile(idxs[0])
			if wantIdx, _ := os.ReadFile(want); !bytes.Equal(got, wantIdx) {
				t.Errorf("index: %d bytes unlike git index-pack's %d", len(got), len(wantIdx))
			}
			verify := string(runGit(t, "", nil, "verify-pack", "-v", idxs[0]))
			if !strings.Contains(verify, "chain length = ") {
				t.Errorf("git verify-pack: no deltas in the pack, want some:\n%s", verify)
			}
		})
	}
}

// TestIndexer_Empty: a fetch that sends nothing, or a pack of no object, leaves nothing.
func TestIndexer_Empty(t *testing.T) {
	noObject := append([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00"), make([]byte, 20)...)
	h := sha1.Sum(noObject[:12])
	copy(noObject[12:], h[:])
	for _, pack := range [][]byte{nil, noObject} {
		dir, err := receive(t, pack)
		if err != nil {
			t.Errorf("Close after %d bytes: %v", len(pack), err)
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, "objects", "pack")); len(ents) != 0 {
			t.Errorf("objects/pack after %d bytes: got %d files, want none", len(pack), len(ents))
		}
	}
}

// TestIndexer_Refuses feeds damaged packs: each is refused, and nothing is left in
// objects/pack.
func TestIndexer_Refuses(t *testing.T) {
	r := history(t)
	pack := runGit(t, r.Dir(), []byte("HEAD\n"), "pack-objects", "--revs", "--stdout", "-q", "--delta-base-offset")
	flip := func(i int) []byte {
		p := bytes.Clone(pack)
		p[i] ^= 0x40
		return p
	}
	tests := []struct {
		name string
		pack []byte
	}{
		{"a header only", pack[:12]},
		{"not a pack", []byte("this is not a pack, it is not even binary")},
		{"cut short", pack[:len(pack)/2]},
		{"no trailer", pack[:len(pack)-20]},
		{"a byte changed in the middle", flip(len(pack) / 2)},
		{"a byte of the trailer changed", flip(len(pack) - 1)},
		{"data after the trailer", append(bytes.Clone(pack), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := receive(t, tt.pack)
			t.Logf("Close: %v", err)
			if err == nil {
				t.Errorf("Close: got no error, want the pack refused")
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "objects", "pack")); len(ents) != 0 {
				t.Errorf("objects/pack: got %d files, want none", len(ents))
			}
		})
	}
}
