// Package datadir owns the layout of the agent's data directory (data_dir): every path
// under it is built here, by a method of Layout, and nowhere else. The agent, the release
// store and the CLI ask a Layout where things are, so that moving a file is a change to
// one method, and the README's "On disk" section can be checked against one file.
//
//	<data_dir>/
//	  state.db                      deploys and seen deliveries (bbolt)
//	  run/admin.sock                admin API socket (the default admin_socket)
//	  objects/<2 hex>/<38 hex>[.x]  one read-only file per (blob, exec bit), shared by all apps
//	  objects/.lock, objects/tmp/   the object store's lock and its temporary files
//	  apps/<app>/cache.git/         bare git cache
//	  apps/<app>/releases/<sha>/    a release: hard links into objects/
//	  apps/<app>/meta/<sha>.json    a release's metadata and mark
//	  apps/<app>/current            symlink to releases/<sha>
//	  apps/<app>/deploys/<id>.log   a deploy's log
//	  apps/<app>/units.json         the systemd units and instances installed for the app
//	  apps/<app>/config/env         the app's environment file from etcd
//	  apps/<app>/config/good.json   the last configuration rolled out healthy
//	  apps/<app>/config/bad.json    the last configuration reverted as unhealthy
//
// A Layout names paths, and says the mode of each (modes.go): MkdirAll and Prepare create
// directories with them, whatever the umask, and Prepare fixes those an older agent made
// with other modes. Callers pass names that were validated where they came from (app names
// by the configuration, shas and deploy ids by the code that made them).
package datadir
