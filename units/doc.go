// Package units owns the step from a release's service.json to running systemd units: it reads
// and validates the file (pushdeploy's own format, or ndm's as is), renders one hardened
// template unit per service, the per-instance drop-ins that differ between instances, and an
// app target that groups every instance, and installs and starts them.
//
// Rendering is pure: Generate reads nothing and writes nothing, so the same Spec and Options
// always give the same bytes, and `pushdeploy units render` shows exactly what a deploy would
// install.
//
// Units name the release directory itself (releases/<sha>), never the current symlink: what a
// unit runs is visible in `systemctl cat`, and switching current never changes a running
// service behind systemd's back.
//
// Every value that reaches a unit file is escaped for the directive it lands in (specifiers,
// variables, quotes, backslashes); a value systemd cannot express, such as a newline in an
// environment value, is a validation error that names the field, never a broken unit.
//
// Installer puts generated units in place through systemd's D-Bus API: it writes them
// atomically into a unit directory, starts or restarts the instances one after another and
// watches each stay active, retires the units a release dropped, and on a failed start puts
// the previous release's units back and restarts them.
package units
