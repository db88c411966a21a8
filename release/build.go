package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/sys/unix"

	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
	"github.com/pushdeploy/pushdeploy/internal/datadir"
)

// Info is what the agent records about why a release was made.
type Info struct {
	Branch string
	Deploy string // the deploy id that built it
}

// Build lays out the tree of commit sha, which must be in c, as app's release. Files are hard
// links to read-only objects; symlinks are symlinks; the exec bit is kept. It is built in a
// temporary directory and renamed into place, so releases/<sha> is either whole or absent.
// Building a release that exists already returns it unchanged.
//
// Every directory is created and entered through file descriptors with O_NOFOLLOW, so a
// crafted tree can never make a write follow a symlink out of the release.
func (s *Store) Build(ctx context.Context, app string, c *Cache, sha string, info Info) (Release, error) {
	if !ValidSHA(sha) {
		return Release{}, fmt.Errorf("build %q: not a 40-hex commit id", sha)
	}
	final := s.ReleaseDir(app, sha)
	if _, err := os.Lstat(final); err == nil {
		return s.release(app, sha)
	}
	tree, err := c.tree(sha)
	if err != nil {
		return Release{}, err
	}
	if err := s.dirs.MkdirAll(s.dirs.Releases(app)); err != nil {
		return Release{}, fmt.Errorf("create releases dir: %w", err)
	}
	tmp, err := os.MkdirTemp(s.dirs.Releases(app), ".build-"+sha[:12]+"-")
	if err != nil {
		return Release{}, fmt.Errorf("create release dir: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, datadir.ModeRelease); err != nil {
		return Release{}, fmt.Errorf("create release dir: %w", err)
	}
	root, err := unix.Open(tmp, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Release{}, fmt.Errorf("open release dir: %w", err)
	}
	defer unix.Close(root)

	unlock, err := s.lockObjects(false)
	if err != nil {
		return Release{}, err
	}
	b := &builder{ctx: ctx, store: s, cache: c}
	err = b.writeTree(root, "", tree)
	unlock()
	if err != nil {
		return Release{}, fmt.Errorf("build release %.12s: %w", sha, err)
	}
	meta := Release{SHA: sha, Branch: info.Branch, Deploy: info.Deploy, Created: time.Now().UTC()}
	if err := s.writeMeta(app, meta); err != nil {
		return Release{}, err
	}
	// Objects, links and metadata reach the disk before the release's name does.
	if err := s.syncStore(); err != nil {
		return Release{}, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return Release{}, fmt.Errorf("publish release %.12s: %w", sha, err)
	}
	ok = true
	if err := atomicfile.SyncDir(s.dirs.Releases(app)); err != nil {
		return Release{}, err
	}
	return s.release(app, sha)
}

type builder struct {
	ctx   context.Context
	store *Store
	cache *Cache
}

// writeTree writes the entries of t into the directory open as dirfd; prefix is its path in
// the tree, for errors.
func (b *builder) writeTree(dirfd int, prefix string, t *object.Tree) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	for _, e := range t.Entries {
		p := path.Join(prefix, e.Name)
		if err := checkName(e.Name); err != nil {
			return fmt.Errorf("%q: %w", p, err)
		}
		switch e.Mode {
		case filemode.Dir:
			sub, err := b.cache.repo.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: read tree: %w", p, err)
			}
			if err := unix.Mkdirat(dirfd, e.Name, uint32(datadir.ModeRelease)); err != nil {
				return fmt.Errorf("%s: mkdir: %w", p, err)
			}
			fd, err := unix.Openat(dirfd, e.Name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("%s: open: %w", p, err)
			}
			// Whatever the agent's umask: the release's services (other users) read it.
			if err := unix.Fchmod(fd, uint32(datadir.ModeRelease)); err != nil {
				unix.Close(fd)
				return fmt.Errorf("%s: chmod: %w", p, err)
			}
			err = b.writeTree(fd, p, sub)
			unix.Close(fd)
			if err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			if err := b.writeFile(dirfd, p, e); err != nil {
				return err
			}
		case filemode.Symlink:
			blob, err := b.cache.repo.BlobObject(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: read symlink: %w", p, err)
			}
			target, err := readAll(blob)
			if err != nil {
				return fmt.Errorf("%s: read symlink: %w", p, err)
			}
			if err := unix.Symlinkat(target, dirfd, e.Name); err != nil {
				return fmt.Errorf("%s: symlink: %w", p, err)
			}
		case filemode.Submodule:
			return fmt.Errorf("%s: %w (pin its files into the repository instead)", p, ErrSubmodule)
		default:
			return fmt.Errorf("%s: unsupported file mode %s", p, e.Mode)
		}
	}
	return nil
}

// writeFile hard-links the object into place. A filesystem's limit on links per inode (65000
// on ext4, reached by repos with thousands of identical files) is met with a private copy.
func (b *builder) writeFile(dirfd int, p string, e object.TreeEntry) error {
	exec := e.Mode == filemode.Executable
	obj, err := b.store.ensureObject(b.cache, e.Hash, exec)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	err = unix.Linkat(unix.AT_FDCWD, obj, dirfd, e.Name, 0)
	if errors.Is(err, unix.EMLINK) {
		err = copyAt(obj, dirfd, e.Name, objectMode(exec))
	}
	if err != nil {
		return fmt.Errorf("%s: link: %w", p, err)
	}
	return nil
}

func copyAt(src string, dirfd int, name string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode))
	if err != nil {
		return err
	}
	out := os.NewFile(uintptr(fd), name)
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
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

func readAll(blob *object.Blob) (string, error) {
	r, err := blob.Reader()
	if err != nil {
		return "", err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, 4096))
	return string(data), err
}
