package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The modes of the data directory. The agent runs as root, and what a push deploys runs as
// other users (a dynamic user per service under a system manager), which must reach their
// release and nothing else of the agent's: every directory on the way to a release can be
// passed through but not listed, a release can be read, and the rest is the agent's alone.
// Every mode is set explicitly (chmod after create), so the agent's umask never narrows
// one: a release its service cannot enter fails at start with status=200/CHDIR.
//
//	<data_dir>/                      0711  ModeTraverse
//	  state.db                       0600  (bbolt)
//	  run/                           0700  (admin.Listen, when admin_socket is the default)
//	  run/admin.sock                 0600
//	  objects/, objects/<2 hex>/     0700  ModePrivate
//	  objects/tmp/                   0700
//	  objects/.lock                  0600  ModePrivateFile
//	  objects/<2 hex>/<38 hex>[.x]   0444 or 0555: hard-linked into releases, so a release's
//	                                       files have these modes (read-only, exec bit kept)
//	  apps/, apps/<app>/             0711  ModeTraverse
//	  apps/<app>/releases/           0711
//	  apps/<app>/releases/<sha>/     0755  ModeRelease, and every directory in it
//	  apps/<app>/current             symlink
//	  apps/<app>/cache.git/          0700  (its contents as go-git makes them)
//	  apps/<app>/meta/               0700, meta/<sha>.json 0600
//	  apps/<app>/deploys/            0700, deploys/<id>.log 0600
//	  apps/<app>/units.json          0600
//	  apps/<app>/config/             0700, env, good.json, bad.json 0600
//
// The environment file is 0600 in a 0700 directory: systemd reads EnvironmentFile= as root
// before it drops privileges, so a service never needs to open it, and no other service can.
const (
	// ModeTraverse is the mode of the directories on the way to a release: the services
	// pass through them (search), and cannot list them.
	ModeTraverse os.FileMode = 0o711
	// ModeRelease is the mode of a release directory and of every directory in it: its
	// services read and list their release.
	ModeRelease os.FileMode = 0o755
	// ModePrivate is the mode of every other directory: the agent's alone.
	ModePrivate os.FileMode = 0o700
	// ModePrivateFile is the mode of every file the agent writes for itself: state,
	// records, logs, environment files and configuration caches.
	ModePrivateFile os.FileMode = 0o600
)

// Mode is the mode the agent gives the directory dir of the layout (ModeTraverse,
// ModeRelease or ModePrivate), by where it is: the root, apps/, apps/<app>/ and
// apps/<app>/releases/ are on the way to a release, a release and what is in it are read
// by its services, and everything else is private. A directory outside Root is on the way
// to it.
func (l Layout) Mode(dir string) os.FileMode {
	rel, err := filepath.Rel(l.Root, dir)
	if err != nil || rel == "." || !filepath.IsLocal(rel) {
		return ModeTraverse // Root itself, or a parent of it
	}
	parts := strings.Split(rel, string(filepath.Separator))
	switch {
	case parts[0] != "apps":
		return ModePrivate
	case len(parts) <= 2:
		return ModeTraverse // apps/, apps/<app>/
	case parts[2] != "releases":
		return ModePrivate
	case len(parts) == 3:
		return ModeTraverse // apps/<app>/releases/
	}
	return ModeRelease
}

// MkdirAll creates dir and every missing parent, each with its Mode, set explicitly so no
// umask narrows it. Existing directories are left as they are (Prepare fixes the fixed
// ones). Parents of Root are created ModeTraverse: the services must pass them.
func (l Layout) MkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := l.MkdirAll(parent); err != nil {
			return err
		}
	}
	mode := l.Mode(dir)
	if err := os.Mkdir(dir, mode); err != nil {
		if errors.Is(err, os.ErrExist) { // created meanwhile
			return nil
		}
		return err // "mkdir <dir>: <why>"
	}
	return os.Chmod(dir, mode)
}

// Prepare makes the fixed directories of the data directory for apps and sets the modes of
// what exists already: an agent before this one created apps/ and apps/<app>/ 0750 (so a
// dynamic user could not reach its release) and objects/ 0755. It creates Root, apps/,
// objects/, and per app its directory, releases/, meta/ and deploys/; it only fixes the
// modes of cache.git/, config/ and units.json, which exist once needed. The agent calls it
// when it opens its data directory.
func (l Layout) Prepare(apps ...string) error {
	create := []string{l.Root, filepath.Join(l.Root, "apps"), l.Objects()}
	var fix []string
	for _, app := range apps {
		create = append(create, l.App(app), l.Releases(app), filepath.Dir(l.Meta(app, "x")), filepath.Dir(l.DeployLog(app, "x")))
		fix = append(fix, l.Cache(app), l.Config(app))
	}
	for _, dir := range create {
		if err := l.MkdirAll(dir); err != nil {
			return fmt.Errorf("prepare data dir: %w", err)
		}
	}
	for _, dir := range append(create, fix...) {
		if err := chmodIfExists(dir, l.Mode(dir)); err != nil {
			return fmt.Errorf("prepare data dir: %w", err)
		}
	}
	for _, app := range apps {
		if err := chmodIfExists(l.Units(app), ModePrivateFile); err != nil {
			return fmt.Errorf("prepare data dir: %w", err)
		}
	}
	return nil
}

// chmodIfExists sets path's mode unless it is missing; a symlink is never followed.
func chmodIfExists(path string, mode os.FileMode) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&os.ModeSymlink != 0 || fi.Mode().Perm() == mode:
		return nil
	}
	return os.Chmod(path, mode)
}
