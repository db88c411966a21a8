package release

import (
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/filemode"
)

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
//   - an unsupported mode: anything git itself does not write (git's deprecated 100664 is
//     a regular file, as git reads it);
//   - otherwise prefix/name, which is always a local path: joined to the release root and
//     cleaned, it is the root followed by "/" and the path, unchanged.
func entryPath(prefix, name string, mode filemode.FileMode) (string, entryKind, error) {
	p := treePath(prefix, name)
	if err := checkName(name); err != nil {
		return p, 0, fmt.Errorf("%s: %w", quote(p), err)
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

// checkName refuses tree entry names that could step outside their directory or into git's.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return ErrUnsafePath
	case strings.ContainsAny(name, "/\x00"):
		return ErrUnsafePath
	case strings.EqualFold(strings.TrimRight(name, ". "), ".git"):
		return ErrUnsafePath
	}
	return nil
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
