// Package sdbus is the low-level systemd access that both the rollout engine's adapter
// (rollout/systemd) and the test harness (internal/usermanager) need, kept apart so that
// the harness does not depend on the engine: dialing a D-Bus address as ourselves, telling
// systemd's "no such unit" answer, and reading a unit's last journal lines reliably.
package sdbus
