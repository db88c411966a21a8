// Package usermanager starts a real systemd user manager of its own, with its own D-Bus
// session bus, journal and cgroup subtree, on a host where none runs (a container, a CI
// machine without systemd as PID 1): the tests' systemd (internal/testenv) and `make demo`
// (scripts/demo/usermanager) run units in it as a host's own user manager would.
//
// It runs as root, in a private mount namespace (unshare -m --propagation private) where a
// tmpfs hides the host's /run/systemd, so the host never sees /run/systemd/system and
// nothing the manager or its units mount leaks out. Its process tree, in one process group
// and in a cgroup subtree of its own (so two managers never share a unit's cgroup, where
// stopping one's unit would kill the other's processes), is:
//
//	sh (launcher)              cgroup <name>-N.slice/launcher.scope
//	├─ systemd-journald        its own journal, files in JournalDir
//	└─ systemd --user          cgroup <name>-N.slice/user@0.service
//	   ├─ dbus-daemon          dbus.service: the session bus at RuntimeDir/bus
//	   └─ units                …/user@0.service/app.slice/<unit>
//
// The bus is the manager's own dbus.socket and dbus.service, as on a host with
// dbus-user-session, not a dbus-daemon started beside the manager as REFERENCE.md §4 says:
// a user manager connects only to a bus whose units it runs, and with dbus-user-session
// installed its dbus.socket takes over the socket path of a bus started beside it, which is
// why §4 seemed to work.
//
// Measured on Debian 12 (systemd 252, cgroup v1 hybrid, root, no systemd as PID 1); the
// facts callers can rely on:
//
//   - Start: the manager owns its bus name and SystemState is "running" 80–110 ms after
//     the launcher starts (the manager logs "Startup finished in 30ms"); stop, units
//     included, takes about 30 ms.
//   - `systemctl --user is-system-running` prints "offline" and exits 1 even though the
//     manager runs: systemctl checks sd_booted() in its own mount namespace, where
//     /run/systemd/system does not exist (run through nsenter into the manager's
//     namespace it prints "running"). Read the SystemState property instead (`systemctl
//     --user show -p SystemState --value`, or D-Bus). Other verbs, enable --now included,
//     work.
//   - A unit written to UnitDir is loaded after a daemon-reload over D-Bus
//     (Conn.ReloadContext). StartUnitContext and RestartUnitContext report job result
//     "done" as soon as a Type=simple unit's process is spawned, even for /bin/false: the
//     unit turns "failed" (Result "exit-code") right after, so check ActiveState yourself
//     (REFERENCE.md §3). Type=exec waits for the execve: a missing binary (203/EXEC) or a
//     sandbox the manager cannot set up (226/NAMESPACE) fails the job itself.
//   - The journal works: each unit's stdout and stderr and the manager's lines about it
//     ("Main process exited, code=exited, status=3") are in JournalDir, and JournalLines
//     reads them like `journalctl --user -u`.
//   - Sandboxing works fully, DynamicUser=yes and User= included (the manager runs as
//     root, so it can switch users; a dynamic user is known only inside the namespace).
//     ProtectHome=yes, ProtectKernelTunables=yes and ProtectKernelLogs=yes fail with
//     226/NAMESPACE under a bare user manager because they bind-mount the "inaccessible"
//     nodes from /run/systemd/inaccessible, which PID 1 creates at boot; Start points that
//     path at the nodes the user manager creates for itself, so they work here as on a
//     booted host.
//   - Resource limits (MemoryMax=, TasksMax=, CPUWeight=) are accepted but not enforced:
//     on this cgroup v1 host the user manager gets no controllers.
//   - PrivateTmp=yes creates /tmp/systemd-private-* and /var/tmp/systemd-private-* on the
//     host. The manager removes them in a thread when the unit stops, and does not wait for
//     that thread when it exits, so Stop stops the units first, then the manager.
package usermanager
