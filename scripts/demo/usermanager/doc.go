// Command usermanager runs a private systemd user manager (internal/usermanager) for
// `make demo` on a machine where the invoking user has none: as root, with its own D-Bus
// session bus, journal and cgroup subtree, in a mount namespace of its own.
//
//	go run ./scripts/demo/usermanager [-dir DIR] [-stdin=false]
//
// Once the manager runs it prints, on stdout, one key=value line each:
//
//	bus=unix:path=/tmp/sd…/bus       the manager's D-Bus address (DBUS_SESSION_BUS_ADDRESS)
//	unit_dir=…/config/systemd/user    where it loads units from
//	journal_dir=…/log/journal         its journal files, for `journalctl -D`
//	runtime_dir=/tmp/sd…              XDG_RUNTIME_DIR, for `systemctl --user`
//
// then runs until SIGTERM or SIGINT, or until its standard input reaches end of file (so a
// script that holds the write end of a pipe stops it by closing it, or by dying), and stops
// the manager, its units and everything it started before exiting 0. Exit status 2 means
// this machine cannot run a private manager (the reason is on stderr), 1 any other failure.
package main
