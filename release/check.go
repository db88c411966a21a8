package release

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Difference is one way a release directory departs from its commit.
type Difference struct {
	Path    string `json:"path"`
	Problem string `json:"problem"`
}

// Check re-hashes every file of app's release sha as a git blob and compares it, its exec bit,
// every symlink target and the set of names with the commit's tree in c. No difference is the
// proof that the release is byte-exact.
func (s *Store) Check(ctx context.Context, app, sha string, c *Cache) ([]Difference, error) {
	dir := s.ReleaseDir(app, sha)
	if _, err := os.Lstat(dir); err != nil {
		return nil, fmt.Errorf("check %.12s: %w", sha, err)
	}
	tree, err := c.tree(sha)
	if err != nil {
		return nil, fmt.Errorf("check %.12s: %w", sha, err)
	}
	ch := &checker{ctx: ctx, cache: c}
	if err := ch.tree(dir, "", tree); err != nil {
		return nil, fmt.Errorf("check %.12s: %w", sha, err)
	}
	sort.Slice(ch.diffs, func(i, j int) bool { return ch.diffs[i].Path < ch.diffs[j].Path })
	return ch.diffs, nil
}

type checker struct {
	ctx   context.Context
	cache *Cache
	diffs []Difference
}

func (ch *checker) add(p, format string, args ...any) {
	ch.diffs = append(ch.diffs, Difference{Path: p, Problem: fmt.Sprintf(format, args...)})
}

func (ch *checker) tree(dir, prefix string, t *object.Tree) error {
	if err := ch.ctx.Err(); err != nil {
		return err
	}
	want := make(map[string]bool, len(t.Entries))
	for _, e := range t.Entries {
		want[e.Name] = true
		p := path.Join(prefix, e.Name)
		full := filepath.Join(dir, e.Name)
		fi, err := os.Lstat(full)
		if os.IsNotExist(err) {
			ch.add(p, "missing")
			continue
		}
		if err != nil {
			return err
		}
		switch e.Mode {
		case filemode.Dir:
			if !fi.IsDir() {
				ch.add(p, "is %s, want a directory", kind(fi))
				continue
			}
			sub, err := ch.cache.repo.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: read tree: %w", p, err)
			}
			if err := ch.tree(full, p, sub); err != nil {
				return err
			}
		case filemode.Symlink:
			if fi.Mode()&os.ModeSymlink == 0 {
				ch.add(p, "is %s, want a symlink", kind(fi))
				continue
			}
			blob, err := ch.cache.repo.BlobObject(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: read blob: %w", p, err)
			}
			wantTarget, err := readAll(blob)
			if err != nil {
				return fmt.Errorf("%s: read blob: %w", p, err)
			}
			if got, _ := os.Readlink(full); got != wantTarget {
				ch.add(p, "symlink points at %q, want %q", got, wantTarget)
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			if !fi.Mode().IsRegular() {
				ch.add(p, "is %s, want a file", kind(fi))
				continue
			}
			wantExec := e.Mode == filemode.Executable
			if gotExec := fi.Mode()&0o111 != 0; gotExec != wantExec {
				ch.add(p, "exec bit is %v, want %v", gotExec, wantExec)
			}
			if fi.Mode()&0o222 != 0 {
				ch.add(p, "writable (mode %v), want read-only", fi.Mode().Perm())
			}
			got, err := hashFile(full, fi.Size())
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if got != e.Hash {
				ch.add(p, "content hashes to %s, want %s", got, e.Hash)
			}
		default:
			ch.add(p, "unsupported mode %s in tree", e.Mode)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !want[e.Name()] {
			ch.add(path.Join(prefix, e.Name()), "not in the commit")
		}
	}
	return nil
}

// hashFile computes the git blob id of a file, the same way git hash-object does. The file
// was seen regular; it is opened without following a symlink or waiting on a FIFO, and
// read no further than size, so one swapped in meanwhile cannot lead the check astray.
func hashFile(p string, size int64) (plumbing.Hash, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	defer f.Close()
	h := plumbing.NewHasher(plumbing.BlobObject, size)
	if _, err := io.Copy(h, io.LimitReader(f, size)); err != nil {
		return plumbing.ZeroHash, err
	}
	return h.Sum(), nil
}

func kind(fi os.FileInfo) string {
	switch {
	case fi.IsDir():
		return "a directory"
	case fi.Mode()&os.ModeSymlink != 0:
		return "a symlink"
	case fi.Mode().IsRegular():
		return "a file"
	}
	return "a special file"
}
