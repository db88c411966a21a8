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
