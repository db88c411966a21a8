// Package renv keeps apps' configuration in etcd as typed JSON documents, one per app and
// environment, and turns a document into an environment file for the app's systemd units.
//
// npm's renv turned every value into a string, imported additively (stale keys survived)
// and promised a watch it never had. Here a document is stored one key per leaf under
// <prefix><app>/<env>/, each value JSON-encoded, so numbers, booleans, null, strings,
// arrays and empty objects come back exactly as they went in; every write is one etcd
// transaction guarded against concurrent writers; and Watch follows the document across
// compactions and lost connections.
package renv

import "encoding/json"

// Leaves is a configuration document flattened to its leaves: each leaf's key (its path's
// segments, each escaped with EscapeSegment, joined with "/") → the leaf's value as compact
// JSON. A leaf is a string, number, boolean, null, an array (whole, however nested) or an
// empty object; a non-empty object is never a leaf, its members are. The etcd key of a leaf
// is the document's prefix followed by the leaf's key.
type Leaves map[string]json.RawMessage

// DefaultPrefix is where documents live unless configured otherwise:
// DefaultPrefix + "<app>/<env>/" + leaf key.
const DefaultPrefix = "/pushdeploy/config/"
