// Package release owns what is on disk for a deploy: a per-app bare git cache that fetches
// exactly one pinned commit, a content-addressed object store shared by every app, and the
// immutable release directories built from it.
//
// What it keeps under the data directory (package datadir names every path):
//
//	objects/<2 hex>/<38 hex>[.x]       one read-only file per (git blob, exec bit)
//	objects/tmp/build-*/                a build's new objects, until they are on disk
//	apps/<app>/cache.git/               bare go-git cache, shallow
//	apps/<app>/cache.git/pushdeploy-spool/  the last fetch's small blobs, for the build after it
//	apps/<app>/releases/<sha>/          the commit's tree, hard links into objects/
//	apps/<app>/meta/<sha>.json          when and why a release was made, and its mark
//	apps/<app>/current -> releases/<sha>
//
// A release is built in a temporary directory and renamed into place, and current is switched
// with a rename, so a crash at any point leaves either the old state or the new one. A fetch
// indexes its pack as it arrives and spools each small blob to a file as soon as it is
// hashed, so creating the files overlaps the transfer. A file whose object is in the store
// is a hard link made without reading its blob; a spooled blob is a link to its spool file;
// any other missing blob is streamed from the cache's pack into a new object by a bounded
// pool of writers. New objects take their names in the store only after one syncfs has put
// them on disk, so an object under its name is always whole. Memory stays bounded whatever
// the size of the tree or of its files, and grows with the number of objects only by the
// fetch's index (about 50 bytes an object): trees are read from the packs one directory at
// a time, pack indexes are mapped, no go-git repository stays open, and large objects are
// streamed.
package release
