package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
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

// maxSymlink is the longest symlink target Linux stores (PATH_MAX less the NUL).
const maxSymlink = 4095

// Build lays out the tree of commit sha, which must be in c, as app's release. Files are hard
// links to read-only objects; symlinks are symlinks; the exec bit is kept. It is built in a
// temporary directory and renamed into place, so releases/<sha> is either whole or absent.
// Building a release that exists already returns it unchanged.
//
// A file whose object is in the store already is linked without reading its blob; only
// missing blobs are read, streamed from the cache into new objects by Workers goroutines.
// New objects take their names in the store only once they are on disk (one syncfs for the
// whole release), so an object under its name is always whole.
//
// Every directory is created and entered through file descriptors with O_NOFOLLOW, so a
// crafted tree can never make a write follow a symlink out of the release. A tree with a
// name that could escape (ErrUnsafePath) or a submodule (ErrSubmodule) is refused.
func (s *Store) Build(ctx context.Context, app string, c *Cache, sha string, info Info) (Release, error) {
	if !ValidSHA(sha) {
		return Release{}, fmt.Errorf("build %q: not a 40-hex commit id", sha)
	}
	defer c.dropSpool()
	final := s.ReleaseDir(app, sha)
	if _, err := os.Lstat(final); err == nil {
		return s.release(app, sha)
	}
	packs, err := openPacks(c.dir)
	if err != nil {
		return Release{}, fmt.Errorf("build %.12s: %w", sha, err)
	}
	defer packs.close()
	objects := newObjectReader(packs, c.dir)
	defer objects.close()
	tree, err := c.tree(objects, sha)
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

	unlock, err := s.lockObjects(false)
	if err != nil {
		unix.Close(root)
		return Release{}, err
	}
	defer unlock()
	objs, err := s.newObjectWriter(ctx, c, packs)
	if err != nil {
		unix.Close(root)
		return Release{}, err
	}
	defer objs.remove()
	b := &builder{ctx: ctx, store: s, objects: objects, objs: objs}
	err = objs.wait(b.writeTree(newDirRef(root), "", tree))
	if err != nil {
		return Release{}, fmt.Errorf("build release %.12s: %w", sha, err)
	}
	meta := Release{SHA: sha, Branch: info.Branch, Deploy: info.Deploy, Created: time.Now().UTC()}
	if err := s.writeMeta(app, meta); err != nil {
		return Release{}, err
	}
	// Objects, links and metadata reach the disk before any new object or the release
	// takes its name.
	if err := s.syncStore(); err != nil {
		return Release{}, err
	}
	if err := objs.publish(); err != nil {
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
	ctx     context.Context
	store   *Store
	objects *objectReader // the walk's: trees and symlinks
	objs    *objectWriter
}

// writeTree writes the entries of t into dir, whose path in the tree is prefix, and lets
// go of dir. It stops at the first error, its own or a writer's.
func (b *builder) writeTree(dir *dirRef, prefix string, t *object.Tree) error {
	defer dir.release()
	if err := b.ctx.Err(); err != nil {
		return err
	}
	if err := b.objs.err(); err != nil {
		return err
	}
	for _, e := range t.Entries {
		p, kind, err := entryPath(prefix, e.Name, e.Mode)
		if err != nil {
			return err
		}
		switch kind {
		case kindDir:
			sub, err := b.objects.readTree(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: read tree: %w", quote(p), err)
			}
			if err := unix.Mkdirat(dir.fd, e.Name, uint32(datadir.ModeRelease)); err != nil {
				return fmt.Errorf("%s: mkdir: %w", quote(p), err)
			}
			fd, err := unix.Openat(dir.fd, e.Name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("%s: open: %w", quote(p), err)
			}
			// Whatever the agent's umask: the release's services (other users) read it.
			if err := unix.Fchmod(fd, uint32(datadir.ModeRelease)); err != nil {
				unix.Close(fd)
				return fmt.Errorf("%s: chmod: %w", quote(p), err)
			}
			if err := b.writeTree(newDirRef(fd), p, sub); err != nil {
				return err
			}
		case kindFile, kindExec:
			if err := b.writeFile(dir, p, e, kind == kindExec); err != nil {
				return err
			}
		case kindSymlink:
			if err := b.writeSymlink(dir.fd, p, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFile hard-links the file's object into place when the store has it, and otherwise
// hands it to the object writer, which links it once written.
func (b *builder) writeFile(dir *dirRef, p string, e object.TreeEntry, exec bool) error {
	key := objectKey{hash: e.Hash, exec: exec}
	obj := b.store.dirs.Object(key.hash.String(), key.exec)
	var st unix.Stat_t
	if err := unix.Fstatat(unix.AT_FDCWD, obj, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && whole(&st, key.hash) {
		err := linkObject(obj, dir.fd, e.Name, key.exec)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%s: link: %w", quote(p), err)
		}
	}
	return b.objs.want(key, link{dir: dir.hold(), name: e.Name, path: p})
}

// whole reports whether the object file st is the object of blob h as far as its inode
// tells: a regular file, and not an empty one for a blob that is not empty. Objects get
// their names only once on disk, but an older release of the agent named them before
// syncing, and a crash then left empty files.
func whole(st *unix.Stat_t, h plumbing.Hash) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFREG && (st.Size > 0 || h == emptyBlob)
}

// emptyBlob is the id of the empty blob.
var emptyBlob = plumbing.NewHash("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")

func (b *builder) writeSymlink(dirfd int, p string, e object.TreeEntry) error {
	target, err := readSymlink(b.objects, e.Hash)
	if err != nil {
		return fmt.Errorf("%s: %w", quote(p), err)
	}
	if err := unix.Symlinkat(target, dirfd, e.Name); err != nil {
		return fmt.Errorf("%s: symlink: %w", quote(p), err)
	}
	return nil
}

// readSymlink reads the target of a symlink, blob h, at most maxSymlink bytes.
func readSymlink(r *objectReader, h plumbing.Hash) (string, error) {
	typ, data, err := r.read(h, maxSymlink)
	if errors.Is(err, errTooLarge) {
		return "", fmt.Errorf("symlink target longer than the %d bytes Linux allows", maxSymlink)
	}
	if err == nil && typ != plumbing.BlobObject {
		err = fmt.Errorf("object %s is a %s, not a blob", h, typ)
	}
	if err != nil {
		return "", fmt.Errorf("read symlink: %w", err)
	}
	return string(data), nil
}

// linkObject hard-links the object file src into dirfd as name. A filesystem's limit on
// links per inode (65000 on ext4, reached by repos with thousands of identical files) is met
// with a private copy.
func linkObject(src string, dirfd int, name string, exec bool) error {
	err := unix.Linkat(unix.AT_FDCWD, src, dirfd, name, 0)
	if errors.Is(err, unix.EMLINK) {
		err = copyAt(src, dirfd, name, objectMode(exec))
	}
	return err
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
