package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	for _, content := range []string{"one", "two, longer"} {
		if err := Write(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("content: got %q, want %q", got, content)
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode: got %v, want 0640", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("entries: got %d, want 1 (temp file left behind)", len(ents))
	}
}

func TestWrite_missingDir(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "no", "f"), nil, 0o600); err == nil {
		t.Fatal("got nil error for a missing directory")
	}
}

func TestSymlink(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "current")
	for _, target := range []string{"releases/a", "releases/b"} {
		if err := Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		got, err := os.Readlink(p)
		if err != nil || got != target {
			t.Errorf("readlink: got %q (%v), want %q", got, err, target)
		}
	}
}

// TestRemoveTemp plants the temporary files a Write and a Symlink killed before their
// rename leave: RemoveTemp removes them and nothing else.
func TestRemoveTemp(t *testing.T) {
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "units.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Symlink("releases/a", filepath.Join(dir, "current")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".units.json.tmp-123456", ".current.tmp-link"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{".hidden", "x.tmp-1", ".dir.tmp-1"} { // not ours, or a directory
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveTemp(dir); err != nil {
		t.Fatal(err)
	}
	var got []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if want := []string{".dir.tmp-1", ".hidden", "current", "units.json", "x.tmp-1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after RemoveTemp: got %q, want %q", got, want)
	}
	if err := RemoveTemp(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("RemoveTemp of a missing directory: %v", err)
	}
}
