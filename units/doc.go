// Package units owns the step from a release's service.json to systemd unit files: it reads
// and validates the file (pushdeploy's own format, or ndm's as is) and renders one hardened
// template unit per service, the per-instance drop-ins that differ between instances, an
// app target that groups every instance, and for a service whose health check is a command,
// a check unit with the service's identity and sandbox that runs it (CheckUnitName). It also names things the rest of pushdeploy must
// agree on: unit names, instance numbers and their ports (InstancesOf).
//
// The package is pure: it talks to no service manager (the rollout engine installs and
// starts what it renders), Load reads only the release's own regular files (never through
// a symlink, never a FIFO or device), and Generate reads nothing and writes nothing, so the same Spec
// and Options always give the same bytes, and `pushdeploy units render` shows exactly what
// a deploy would install.
//
// Units name the release directory itself (releases/<sha>), never the current symlink: what a
// unit runs is visible in `systemctl cat`, and switching current never changes a running
// service behind systemd's back.
//
// Every value that reaches a unit file is escaped for the directive it lands in (specifiers,
// variables, quotes, backslashes); a value systemd cannot express, such as a newline in an
// environment value, is a validation error that names the field, never a broken unit.
package units
