package release

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
	"github.com/pushdeploy/pushdeploy/internal/datadir"
)

var (
	// ErrUnsafePath means the commit's tree holds a name that could escape or corrupt a
	// release directory: "", ".", "..", ".git" in any case (and with what NTFS and HFS+
	// ignore: trailing dots and spaces, zero-width code points), or a name containing "/"
	// or NUL.
	ErrUnsafePath = errors.New("unsafe path in tree")
	// ErrSubmodule means the tree holds a submodule, which a pinned release cannot contain:
	// its content is not part of the commit.
	ErrSubmodule = errors.New("submodules are not supported")
)

// Store is the data directory: the shared object store and every app's releases.
type Store struct {
	// Workers is how many new objects a build writes at once.
	Workers int

	dirs datadir.Layout
}

// NewStore returns the store of the data directory dirs. Nothing is created until it is
// needed.
func NewStore(dirs datadir.Layout) *Store { return &Store{Workers: DefaultWorkers, dirs: dirs} }

// CacheDir is where an app's bare git cache lives.
func (s *Store) CacheDir(app string) string { return s.dirs.Cache(app) }

// ReleaseDir is the directory of an app's release of commit sha.
func (s *Store) ReleaseDir(app, sha string) string { return s.dirs.Release(app, sha) }

// lockObjects takes the object store lock: shared while releases add and link objects,
// exclusive while gc removes unlinked ones, across processes (the CLI's gc and the agent).
func (s *Store) lockObjects(exclusive bool) (unlock func(), err error) {
	if err := s.dirs.MkdirAll(s.dirs.Objects()); err != nil {
		return nil, fmt.Errorf("create object store: %w", err)
	}
	f, err := os.OpenFile(s.dirs.ObjectsLock(), os.O_CREATE|os.O_RDONLY, datadir.ModePrivateFile)
	if err != nil {
		return nil, fmt.Errorf("lock object store: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock object store: %w", err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// objectMode is read-only: a release can never be edited in place by its service. It is
// readable by all: objects are hard-linked into releases, which their services (other
// users) read; objects/ itself is private (datadir's modes).
func objectMode(exec bool) os.FileMode {
	if exec {
		return 0o555
	}
	return 0o444
}

// syncStore flushes everything written to the data directory's filesystem at once: one
// syncfs instead of an fsync per object keeps a 10,000-file release fast.
func (s *Store) syncStore() error {
	f, err := os.Open(s.dirs.Objects())
	if err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	return nil
}

// Recover removes what an interrupted fetch, build, gc or atomic write left behind:
// temporary packs in app's git cache and its spool, temporary release directories of app (a
// build's, or a removed release's files), metadata of releases that do not exist (written by
// a build before its release took its name, or left by a removal), the temporary files of
// atomic writes in the app's directory and its metadata, and temporary objects. The agent
// calls it at start, before anything builds or writes.
func (s *Store) Recover(app string) error {
	if err := recoverPacks(s.dirs.Cache(app)); err != nil {
		return err
	}
	ents, err := os.ReadDir(s.dirs.Releases(app))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("recover %s: %w", app, err)
	}
	for _, e := range ents {
		if isTemp(e.Name()) {
			if err := os.RemoveAll(filepath.Join(s.dirs.Releases(app), e.Name())); err != nil {
				return fmt.Errorf("recover %s: %w", app, err)
			}
		}
	}
	metas, err := os.ReadDir(s.dirs.MetaDir(app))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("recover %s: %w", app, err)
	}
	for _, e := range metas {
		sha, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !ValidSHA(sha) {
			continue // an atomic write's temporary file (below), or not ours
		}
		if _, err := os.Lstat(s.ReleaseDir(app, sha)); errors.Is(err, os.ErrNotExist) {
			if err := os.Remove(s.dirs.Meta(app, sha)); err != nil {
				return fmt.Errorf("recover %s: %w", app, err)
			}
		}
	}
	// The metadata's, the current link's, and those of the agent's records beside it.
	for _, dir := range []string{s.dirs.MetaDir(app), s.dirs.App(app)} {
		if err := atomicfile.RemoveTemp(dir); err != nil {
			return fmt.Errorf("recover %s: %w", app, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(s.dirs.Cache(app), spoolDir)); err != nil {
		return fmt.Errorf("recover %s: %w", app, err)
	}
	unlock, err := s.lockObjects(true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.RemoveAll(s.dirs.ObjectsTmp()); err != nil {
		return fmt.Errorf("recover object store: %w", err)
	}
	return nil
}

func isTemp(name string) bool { return len(name) > 0 && name[0] == '.' }
