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
