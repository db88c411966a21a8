package release

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
)

// GCResult says what a gc removed.
type GCResult struct {
	Removed []string `json:"removed"` // release shas
	Objects int      `json:"objects"` // objects no release used any more
	Bytes   int64    `json:"bytes"`   // their size
}

// GC applies app's retention; when that removed a release, it then removes every object no
// release of any app links to. (A build gives objects their names in the store only once a
// release links them, so only a removal leaves some unused.) keep counts the good and unmarked releases: the newest keep of them stay, so bad releases
// never push a good one out. A bad release stays, for inspection, only while it is among the
// newest keep releases of all; then it ages out. GC never removes the current release, nor
// the newest good release other than current (the one a rollback would go to), whatever
// their age.
func (s *Store) GC(app string, keep int) (GCResult, error) {
	var res GCResult
	rels, err := s.List(app)
	if err != nil {
		return res, err
	}
	prevGood := ""
	for _, r := range rels {
		if !r.Current && r.Mark == Good {
			prevGood = r.SHA
			break
		}
	}
	kept := 0 // good and unmarked releases kept so far, newest first
	for i, r := range rels {
		if r.Mark != Bad && kept < keep {
			kept++
			continue
		}
		if (r.Mark == Bad && i < keep) || r.Current || r.SHA == prevGood {
			continue
		}
		if err := s.removeRelease(app, r.SHA); err != nil {
			return res, err
		}
		res.Removed = append(res.Removed, r.SHA)
	}
	if len(res.Removed) == 0 {
		return res, nil
	}
	n, bytes, err := s.pruneObjects()
	res.Objects, res.Bytes = n, bytes
	return res, err
}

// removeRelease takes app's release sha out of the store with one rename, to a temporary
// name, and only then removes its files and its metadata: a release under its name is
// always whole, so a gc killed half-way never leaves a release that a later build of the
// same commit would take as built. What it leaves, Recover removes.
func (s *Store) removeRelease(app, sha string) error {
	tmp, err := os.MkdirTemp(s.dirs.Releases(app), ".remove-"+sha[:12]+"-")
	if err != nil {
		return fmt.Errorf("remove release %.12s: %w", sha, err)
	}
	// Into the empty directory's place: rename(2) replaces an empty directory (os.Rename
	// refuses to).
	if err := unix.Rename(s.ReleaseDir(app, sha), tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("remove release %.12s: %w", sha, err)
	}
	if err := atomicfile.SyncDir(s.dirs.Releases(app)); err != nil {
		return fmt.Errorf("remove release %.12s: %w", sha, err)
	}
	if err := os.Remove(s.dirs.Meta(app, sha)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove release %.12s: %w", sha, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove release %.12s: %w", sha, err)
	}
	return nil
}

// pruneObjects removes objects whose only link is the store's own: no release uses them.
// It holds the store lock exclusively, so no build can be between writing an object and
// linking it.
func (s *Store) pruneObjects() (int, int64, error) {
	unlock, err := s.lockObjects(true)
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	var n int
	var bytes int64
	dirs, err := os.ReadDir(s.dirs.Objects())
	if err != nil {
		return 0, 0, fmt.Errorf("prune objects: %w", err)
	}
	for _, d := range dirs {
		if !d.IsDir() || len(d.Name()) != 2 {
			continue
		}
		dn, db, err := pruneDir(filepath.Join(s.dirs.Objects(), d.Name()))
		n, bytes = n+dn, bytes+db
		if err != nil {
			return n, bytes, fmt.Errorf("prune objects: %w", err)
		}
	}
	return n, bytes, nil
}

// pruneDir removes the objects of one directory of the store that have no other link.
func pruneDir(dir string) (n int, bytes int64, err error) {
	d, err := os.Open(dir)
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, 0, err
	}
	fd := int(d.Fd())
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Nlink > 1 {
			continue
		}
		if err := unix.Unlinkat(fd, name, 0); err != nil {
			return n, bytes, fmt.Errorf("remove %s: %w", filepath.Join(dir, name), err)
		}
		n++
		bytes += st.Size
	}
	return n, bytes, nil
}
