// Package systemd is the rollout engine's service manager on a host: it implements
// rollout.Manager with go-systemd over D-Bus (the system manager, or a user manager at a
// given bus address), writes unit files atomically into the manager's unit directory, and
// reads a unit's journal with journalctl.
//
// Every job (start, restart, stop, the target's start) goes through one helper that queues
// it and waits for its result, so a job that fails or times out is always a
// *rollout.JobError and never a silent success.
package systemd
