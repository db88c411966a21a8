package agent

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// prepareDataDir creates the data directory's fixed directories for every app and sets the
// modes datadir documents, fixing those an older agent left (apps/ and apps/<app>/ 0750: a
// dynamic user could not reach its release).
func (a *Agent) prepareDataDir() error {
	return a.dirs.Prepare(slices.Sorted(maps.Keys(a.apps))...)
}

// reachable checks that every directory from / to dir lets other users pass (o+x), so a
// service running as another user (a dynamic user, under a system manager) can enter its
// release: otherwise it fails at start with status=200/CHDIR, which says little. The
// agent's own directories have the right modes (datadir); this catches a data_dir under a
// private parent (/root, a 0700 /srv/…).
func reachable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("release %s cannot be reached by its services, which run as other users: %s is mode %#o, without o+x (the services would fail with status=200/CHDIR): make it traversable (chmod o+x) or move data_dir",
				dir, d, fi.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}
