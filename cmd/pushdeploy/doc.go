// Command pushdeploy is a per-host deploy agent: a signed git push becomes an exact,
// immutable release, switched live. See the README for the subcommands.
package main
