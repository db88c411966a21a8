package release

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"golang.org/x/sys/unix"
)

// maxName is the longest file name Linux filesystems store (NAME_MAX).
const maxName = 255

// entryKind is what a tree entry becomes in a release.
type entryKind int

const (
	kindDir     entryKind = iota + 1 // a directory, entered with O_NOFOLLOW
	kindFile                         // a read-only file, 0444
	kindExec                         // an executable file, 0555
	kindSymlink                      // a symlink, its target as is
)

// entryPath is the one decision on a tree entry: the entry name with mode, found in the
// tree directory at prefix (itself a path entryPath returned, or "" for the root), either
// becomes the path it returns, of the kind it returns, or is refused with an error naming
// it (quoted, on one line). It is pure, so that it can be fuzzed.
//
// The outcomes:
//   - ErrUnsafePath: a name that is not exactly one path element inside its directory, or
//     that is git's directory (see checkName);
//   - ErrSubmodule: a gitlink, whose content is not in the commit;
//   - unix.ENAMETOOLONG: a name longer than 255 bytes, which no Linux filesystem stores
//     (refused here, before anything is written, rather than by the first mkdir or link);
//   - an unsupported mode: anything git itself does not write (git's deprecated 100664 is
//     a regular file, as git reads it);
//   - otherwise prefix/name, which is always a local path: joined to the release root and
//     cleaned, it is the root followed by "/" and the path, unchanged.
func entryPath(prefix, name string, mode filemode.FileMode) (string, entryKind, error) {
	p := treePath(prefix, name)
	if err := checkName(name); err != nil {
		return p, 0, fmt.Errorf("%s: %w", quote(p), err)
	}
	if len(name) > maxName {
		return p, 0, fmt.Errorf("%s: name of %d bytes, longer than the %d Linux allows: %w", quote(p), len(name), maxName, unix.ENAMETOOLONG)
	}
	switch mode {
	case filemode.Dir:
		return p, kindDir, nil
	case filemode.Regular, filemode.Deprecated:
		return p, kindFile, nil
	case filemode.Executable:
		return p, kindExec, nil
	case filemode.Symlink:
		return p, kindSymlink, nil
	case filemode.Submodule:
		return p, 0, fmt.Errorf("%s: %w (pin its files into the repository instead)", quote(p), ErrSubmodule)
	default:
		return p, 0, fmt.Errorf("%s: unsupported file mode %s", quote(p), mode)
	}
}

// checkName refuses tree entry names that could step outside their directory or into git's:
// "", ".", "..", a name holding "/" or NUL, and git's directory as any filesystem a release
// could land on might read the name (isDotGit).
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return ErrUnsafePath
	case strings.ContainsAny(name, "/\x00"):
		return ErrUnsafePath
	case isDotGit(name):
		return ErrUnsafePath
	}
	return nil
}

// isDotGit reports whether name could open as ".git": a .git directory in a release would
// have any git run there (by a deploy script, say) read a config the pusher wrote, and
// core.fsmonitor in it runs a command. Git itself refuses the same forms (verify_path with
// core.protectNTFS and core.protectHFS): ".git" in any case, followed by any dots and
// spaces (which NTFS drops), with any of the code points HFS+ ignores anywhere in it. A
// Linux filesystem matches names byte for byte, but one with casefolded directories (ext4,
// f2fs) folds case, and before Linux 6.14 also ignored those code points. NTFS's short
// names ("GIT~1") are not refused: no Linux filesystem makes them up.
func isDotGit(name string) bool {
	var b strings.Builder
	for i := 0; i < len(name); {
		r, n := utf8.DecodeRuneInString(name[i:])
		if r == utf8.RuneError || !hfsIgnorable(r) {
			b.WriteString(name[i : i+n])
		}
		i += n
	}
	return strings.EqualFold(strings.TrimRight(b.String(), ". "), ".git")
}

// hfsIgnorable reports whether HFS+ ignores r in a name (git's list, utf8.c): the zero-width
// joiners, the direction marks and embeddings, the deprecated format characters and the
// byte order mark.
func hfsIgnorable(r rune) bool {
	switch {
	case r >= 0x200c && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x206a && r <= 0x206f, r == 0xfeff:
		return true
	}
	return false
}

// treePath is the path of name in the tree directory at prefix, as is: never cleaned, so
// that an entry ".." shows as one.
func treePath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}

// quote is a tree path as errors show it: quoted, so that a name with a newline or bytes
// that are not UTF-8 cannot forge a log line, and cut in the middle when very long.
func quote(p string) string {
	const most = 256
	if len(p) > most {
		p = p[:most/2] + "…" + p[len(p)-most/2:]
	}
	return fmt.Sprintf("%q", p)
}
