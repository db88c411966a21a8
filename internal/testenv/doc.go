// Package testenv starts real components for tests: git repositories and git
// servers, a private systemd user manager with its own bus and journal, an
// haproxy with its admin socket, sshd and etcd. Every helper calls t.Helper() and
// registers t.Cleanup.
//
// A test ends early only when the machine cannot provide a component it needs,
// and only through Unavailable, which says which component and why: it skips the
// test, except under CI=true (as .ci/run runs), where it fails it, so that CI
// cannot pass by skipping. No test skips for any other reason (there is no
// -short mode): `make test` runs every test, and its closing summary counts the
// skipped ones, which fail the run under CI=true.
package testenv
