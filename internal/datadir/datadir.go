package datadir

import "path/filepath"

// Layout is the data directory rooted at Root. Its zero value has no root; every path it
// returns is then relative.
type Layout struct {
	Root string
}

// StateDB is the bbolt file holding deploys and seen deliveries.
func (l Layout) StateDB() string { return filepath.Join(l.Root, "state.db") }

// AdminSocket is where the admin API listens unless admin_socket says otherwise; its
// directory is the agent's alone.
func (l Layout) AdminSocket() string { return filepath.Join(l.Root, "run", "admin.sock") }

// Objects is the object store shared by every app's releases.
func (l Layout) Objects() string { return filepath.Join(l.Root, "objects") }

// Object is the object of the blob whose id is hex (40 hex digits), with or without the exec
// bit: the bit is part of the name because hard links share their mode.
func (l Layout) Object(hex string, exec bool) string {
	name := hex[2:]
	if exec {
		name += ".x"
	}
	return filepath.Join(l.Objects(), hex[:2], name)
}

// ObjectsLock is the file whose flock guards the object store against gc.
func (l Layout) ObjectsLock() string { return filepath.Join(l.Objects(), ".lock") }

// ObjectsTmp is where objects are written before they are renamed into place.
func (l Layout) ObjectsTmp() string { return filepath.Join(l.Objects(), "tmp") }

// App is the directory of everything the agent keeps for one app.
func (l Layout) App(app string) string { return filepath.Join(l.Root, "apps", app) }

// Cache is the app's bare git cache.
func (l Layout) Cache(app string) string { return filepath.Join(l.App(app), "cache.git") }

// Releases is the directory of the app's releases.
func (l Layout) Releases(app string) string { return filepath.Join(l.App(app), "releases") }

// Release is the directory of the app's release of commit sha.
func (l Layout) Release(app, sha string) string { return filepath.Join(l.Releases(app), sha) }

// MetaDir is the directory of the app's releases' metadata files.
func (l Layout) MetaDir(app string) string { return filepath.Join(l.App(app), "meta") }

// Meta is the metadata file of the app's release of commit sha.
func (l Layout) Meta(app, sha string) string { return filepath.Join(l.MetaDir(app), sha+".json") }

// Current is the symlink naming the app's live release.
func (l Layout) Current(app string) string { return filepath.Join(l.App(app), "current") }

// CurrentTarget is what Current points at for the release of sha: relative, so the data
// directory can move.
func (l Layout) CurrentTarget(sha string) string { return filepath.Join("releases", sha) }

// DeployLog is the log file of one deploy of the app.
func (l Layout) DeployLog(app, id string) string {
	return filepath.Join(l.App(app), "deploys", id+".log")
}

// Units records the systemd units and instances installed for the app.
func (l Layout) Units(app string) string { return filepath.Join(l.App(app), "units.json") }

// Config is the directory of the app's configuration from etcd, the agent's alone.
func (l Layout) Config(app string) string { return filepath.Join(l.App(app), "config") }

// EnvFile is the app's environment file, which its units read.
func (l Layout) EnvFile(app string) string { return filepath.Join(l.Config(app), "env") }

// GoodConfig caches the app's last configuration that was rolled out and healthy.
func (l Layout) GoodConfig(app string) string { return filepath.Join(l.Config(app), "good.json") }

// BadConfig records the app's last configuration that was reverted as unhealthy.
func (l Layout) BadConfig(app string) string { return filepath.Join(l.Config(app), "bad.json") }

// Lock is the app's deploy lock on a host without etcd (who, when, why, as JSON): while it
// exists, pushes wait.
func (l Layout) Lock(app string) string { return filepath.Join(l.App(app), "lock.json") }
