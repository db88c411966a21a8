// Package testenv starts real components for tests: git repositories and git
// servers, a private systemd user manager with its own bus and journal, an
// haproxy with its admin socket (later etcd). Every helper calls t.Helper() and
// registers t.Cleanup; a helper skips the test (t.Skip with the reason) only
// when the machine cannot provide the component.
package testenv
