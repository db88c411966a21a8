// Command debcopyright writes the Debian copyright file of the pushdeploy package
// (/usr/share/doc/pushdeploy/copyright, machine-readable format 1.0): the package's own
// header and paragraph, then a paragraph for the Go standard library and one per Go
// module linked into the static binary, with the module's copyright lines and its
// license. A binary distribution of BSD, MIT and ISC code must carry their notices, and
// /usr/bin/pushdeploy is one: it is the only place they are.
//
//	debcopyright -header packaging/debian/copyright bin/pushdeploy > copyright
//
// The modules are read from the binary's build information, found in the module cache
// with `go mod download -json` (offline once the binary was built), and their license
// files (LICENSE*, LICENCE*, COPYING*) classified by their text. Apache-2.0 and MPL-2.0
// refer to /usr/share/common-licenses, as Debian asks; any other license's text is
// included whole. A license it does not recognize is "other", with its text.
package main
