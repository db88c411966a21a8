package release

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"golang.org/x/sys/unix"
)

// TreeNameSeeds are the names of the hostile trees in hostile_test.go and the forms git
// refuses, for both fuzz targets.
var TreeNameSeeds = []string{
	"ok.txt", "..", ".", "", ".git", ".GIT", ".git.", ".GiT ", ".git . .", ".g\u200cit",
	"\ufeff.git", ".git\u200f", ".gi\u206at", "git~1", ".gitmodules", ".git/config", "a/..",
	"evil\nname", "a\nb", "\xff\xfe", "\x80.txt", "nul\x00name", strings.Repeat("n", 250),
	strings.Repeat("x", 255), strings.Repeat("x", 256), strings.Repeat("\u200c", 85) + ".git",
}

// treeModeSeeds are the modes git writes and a few it does not.
var treeModeSeeds = []uint32{0o100644, 0o100755, 0o120000, 0o040000, 0o160000, 0o100664, 0o100600, 0, 0o777}

// FuzzEntryPath checks the one decision on a tree entry: a name with a mode, under a
// parent directory that was itself accepted, is either refused with an error that names
// the entry on one line, or becomes a path inside the release that cleaning leaves as it
// is, of the kind its mode says. The oracles are written apart from entryPath.
func FuzzEntryPath(f *testing.F) {
	for _, n := range TreeNameSeeds {
		for _, m := range treeModeSeeds {
			f.Add("", n, m)
		}
		f.Add("a", n, uint32(0o100644))
		f.Add(n, "file", uint32(0o100755))
	}
	f.Fuzz(func(t *testing.T, parent, name string, mode uint32) {
		prefix, kind, err := entryPath("", parent, filemode.Dir)
		if err != nil || kind != kindDir {
			prefix = "" // the parent was refused: the entry is at the root
		}
		p, kind, err := entryPath(prefix, name, filemode.FileMode(mode))
		if want := treePath(prefix, name); p != want {
			t.Fatalf("entryPath(%q, %q): path %q, want %q", prefix, name, p, want)
		}
		mustRefuse := name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") ||
			len(name) > 255 || mode == uint32(filemode.Submodule) || looksLikeDotGit(name)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, quote(p)+": ") || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("entryPath(%q, %q, %o): error %q: want one line starting with the quoted path %s", prefix, name, mode, msg, quote(p))
			}
			if !errors.Is(err, ErrUnsafePath) && !errors.Is(err, ErrSubmodule) && !errors.Is(err, unix.ENAMETOOLONG) &&
				!strings.Contains(msg, "unsupported file mode") {
				t.Fatalf("entryPath(%q, %q, %o): error %q is none of the documented ones", prefix, name, mode, msg)
			}
			return
		}
		if mustRefuse {
			t.Fatalf("entryPath(%q, %q, %o): accepted as %q, want it refused", prefix, name, mode, p)
		}
		const root = "/var/lib/pushdeploy/apps/web/releases/0123456789abcdef0123456789abcdef01234567"
		if got := filepath.Join(root, p); got != root+"/"+p || !filepath.IsLocal(p) {
			t.Fatalf("entryPath(%q, %q, %o): %q joined to the release is %q: not the release followed by the path", prefix, name, mode, p, got)
		}
		for _, elem := range strings.Split(p, "/") {
			if elem == "" || elem == "." || elem == ".." || looksLikeDotGit(elem) || len(elem) > 255 {
				t.Fatalf("entryPath(%q, %q, %o): %q has the element %q", prefix, name, mode, p, elem)
			}
		}
		want := map[uint32]entryKind{0o040000: kindDir, 0o100644: kindFile, 0o100664: kindFile, 0o100755: kindExec, 0o120000: kindSymlink}[mode]
		if want == 0 || kind != want {
			t.Fatalf("entryPath(%q, %q, %o): kind %d, want %d", prefix, name, mode, kind, want)
		}
	})
}

// looksLikeDotGit is the fuzz oracle for isDotGit, written apart from it: the name with
// HFS+'s ignorable code points dropped, without its trailing dots and spaces, in ASCII
// lower case.
func looksLikeDotGit(name string) bool {
	var kept []byte
	for len(name) > 0 {
		r, n := utf8.DecodeRuneInString(name)
		ignorable := (0x200c <= r && r <= 0x200f) || (0x202a <= r && r <= 0x202e) || (0x206a <= r && r <= 0x206f) || r == 0xfeff
		if !ignorable || n == 1 {
			kept = append(kept, name[:n]...)
		}
		name = name[n:]
	}
	s := string(kept)
	for strings.HasSuffix(s, ".") || strings.HasSuffix(s, " ") {
		s = s[:len(s)-1]
	}
	lower := []byte(s)
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	return string(lower) == ".git" // no letter outside ASCII folds to g, i or t

}

func TestIsDotGit(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{".git", true}, {".GIT", true}, {".Git. . .", true}, {".git\u200d", true}, {"\u202e.git", true},
		{".gi\ufefft  ", true}, {".git~1", false}, {"git", false}, {".gitignore", false},
		{".git\u2010", false}, {"..git", false}, {".g\xffit", false}, {" .git", false}, {".g\u0130t", false}, {".gi\u0165", false},
	}
	for _, tt := range tests {
		if got := isDotGit(tt.name); got != tt.want {
			t.Errorf("isDotGit(%q): got %v, want %v", tt.name, got, tt.want)
		}
	}
}
