package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/sys/unix"
)

// Difference is one way a release directory departs from its commit.
type Difference struct {
	Path    string `json:"path"`
	Problem string `json:"problem"`
}

// Check re-hashes every file of app's release sha as a git blob and compares it, its exec bit,
// every symlink target and the set of names with the commit's tree in c. No difference is the
// proof that the release is byte-exact.
//
// It walks the release through directory descriptors, each entry relative to its own
// directory and never through a symlink, so no path is too long to check however deep the
// tree.
func (s *Store) Check(ctx context.Context, app, sha string, c *Cache) ([]Difference, error) {
	dir := s.ReleaseDir(app, sha)
	objects, err := c.reader()
	if err != nil {
		return nil, fmt.Errorf("check %.12s: %w", sha, err)
	}
	defer objects.close()
	tree, err := c.tree(objects, sha)
	if err != nil {
		return nil, fmt.Errorf("check %.12s: %w", sha, err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("check %.12s: %w", sha, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(fd)
	ch := &checker{ctx: ctx, objects: objects, buf: make([]byte, copyBuffer)}
	if err := ch.tree(fd, "", tree); err != nil {
		return nil, fmt.Errorf("check %.12s: %w", sha, err)
	}
	sort.Slice(ch.diffs, func(i, j int) bool { return ch.diffs[i].Path < ch.diffs[j].Path })
	return ch.diffs, nil
}

type checker struct {
	ctx     context.Context
	objects *objectReader
	diffs   []Difference
	buf     []byte
}

func (ch *checker) add(p, format string, args ...any) {
	ch.diffs = append(ch.diffs, Difference{Path: p, Problem: fmt.Sprintf(format, args...)})
}

// tree compares the directory open as dirfd, at prefix in the tree, with t.
func (ch *checker) tree(dirfd int, prefix string, t *object.Tree) error {
	if err := ch.ctx.Err(); err != nil {
		return err
	}
	want := make(map[string]bool, len(t.Entries))
	for _, e := range t.Entries {
		want[e.Name] = true
		p := treePath(prefix, e.Name)
		if checkName(e.Name) != nil {
			ch.add(p, "unsafe name in the commit's tree")
			continue
		}
		var st unix.Stat_t
		err := unix.Fstatat(dirfd, e.Name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			ch.add(p, "missing")
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", quote(p), err)
		}
		if err := ch.entry(dirfd, p, e, &st); err != nil {
			return err
		}
	}
	names, err := readDirNames(dirfd)
	if err != nil {
		return fmt.Errorf("%s: %w", quote(prefix), err)
	}
	for _, name := range names {
		if !want[name] {
			ch.add(treePath(prefix, name), "not in the commit")
		}
	}
	return nil
}

// entry compares one entry of the directory dirfd, st, with the tree's entry e.
func (ch *checker) entry(dirfd int, p string, e object.TreeEntry, st *unix.Stat_t) error {
	typ := st.Mode & unix.S_IFMT
	switch e.Mode {
	case filemode.Dir:
		if typ != unix.S_IFDIR {
			ch.add(p, "is %s, want a directory", kind(typ))
			return nil
		}
		sub, err := ch.objects.readTree(e.Hash)
		if err != nil {
			return fmt.Errorf("%s: read tree: %w", quote(p), err)
		}
		fd, err := unix.Openat(dirfd, e.Name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: open: %w", quote(p), err)
		}
		defer unix.Close(fd)
		return ch.tree(fd, p, sub)
	case filemode.Symlink:
		if typ != unix.S_IFLNK {
			ch.add(p, "is %s, want a symlink", kind(typ))
			return nil
		}
		wantTarget, err := readSymlink(ch.objects, e.Hash)
		if err != nil {
			return fmt.Errorf("%s: %w", quote(p), err)
		}
		buf := make([]byte, maxSymlink+1)
		n, err := unix.Readlinkat(dirfd, e.Name, buf)
		if err != nil {
			return fmt.Errorf("%s: readlink: %w", quote(p), err)
		}
		if got := string(buf[:n]); got != wantTarget {
			ch.add(p, "symlink points at %q, want %q", got, wantTarget)
		}
	case filemode.Regular, filemode.Deprecated, filemode.Executable:
		if typ != unix.S_IFREG {
			ch.add(p, "is %s, want a file", kind(typ))
			return nil
		}
		perm := os.FileMode(st.Mode & 0o777)
		wantExec := e.Mode == filemode.Executable
		if gotExec := perm&0o111 != 0; gotExec != wantExec {
			ch.add(p, "exec bit is %v, want %v", gotExec, wantExec)
		}
		if perm&0o222 != 0 {
			ch.add(p, "writable (mode %v), want read-only", perm)
		}
		got, err := ch.hashFile(dirfd, e.Name, st.Size)
		if err != nil {
			return fmt.Errorf("%s: %w", quote(p), err)
		}
		if got != e.Hash {
			ch.add(p, "content hashes to %s, want %s", got, e.Hash)
		}
	default:
		ch.add(p, "unsupported mode %s in tree", e.Mode)
	}
	return nil
}

// hashFile computes the git blob id of the file name in dirfd, of size bytes, the same way
// git hash-object does. The file was seen regular; it is opened without following a
// symlink or waiting on a FIFO, and read no further than size, so one swapped in meanwhile
// cannot lead the check astray.
func (ch *checker) hashFile(dirfd int, name string, size int64) (plumbing.Hash, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	h := plumbing.NewHasher(plumbing.BlobObject, size)
	if _, err := io.CopyBuffer(h, io.LimitReader(f, size), ch.buf); err != nil {
		return plumbing.ZeroHash, err
	}
	return h.Sum(), nil
}

// readDirNames lists the directory open as dirfd, through a descriptor of its own.
func readDirNames(dirfd int) ([]string, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), ".")
	defer d.Close()
	return d.Readdirnames(-1)
}

func kind(typ uint32) string {
	switch typ {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFREG:
		return "a file"
	}
	return "a special file"
}
