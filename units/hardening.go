package units

import (
	"fmt"
	"slices"
	"strings"
)

// protection is one sandboxing directive every generated service gets. With the dynamic
// user, a default service scores 1.4 ("OK") in `systemd-analyze security --offline=yes`; the
// same unit without them scores 9.6 ("UNSAFE"). security_test.go holds it to 2.5 or lower.
type protection struct {
	name  string   // the directive, and the name "relax" takes
	lines []string // what the unit says
	// dynamicUser: DynamicUser=yes re-imposes it, so relaxing it needs an explicit user.
	dynamicUser bool
	// userManager, when set, is why a user manager cannot apply it: such a unit fails to
	// start with 226/NAMESPACE. Measured with systemd 252 in a container without a system
	// manager (REFERENCE.md §4); a host that allows more still gets the safe subset.
	userManager string
}

const namespaceRefused = "the user manager cannot set it up: the start fails with 226/NAMESPACE"

var protections = []protection{
	{name: "PrivateTmp", lines: []string{"PrivateTmp=yes"}, dynamicUser: true},
	{name: "PrivateDevices", lines: []string{"PrivateDevices=yes"}},
	{name: "PrivateUsers", lines: []string{"PrivateUsers=yes"}},
	{name: "PrivateMounts", lines: []string{"PrivateMounts=yes"}},
	{name: "ProtectSystem", lines: []string{"ProtectSystem=strict"}, dynamicUser: true},
	// read-only, not yes: yes hides every home directory but cannot be set up under a user
	// manager, and read-only already stops writes.
	{name: "ProtectHome", lines: []string{"ProtectHome=read-only"}, dynamicUser: true},
	{name: "ProtectProc", lines: []string{"ProtectProc=invisible"}},
	{name: "ProtectKernelTunables", lines: []string{"ProtectKernelTunables=yes"}, userManager: namespaceRefused},
	{name: "ProtectKernelModules", lines: []string{"ProtectKernelModules=yes"}},
	{name: "ProtectKernelLogs", lines: []string{"ProtectKernelLogs=yes"}, userManager: namespaceRefused},
	{name: "ProtectControlGroups", lines: []string{"ProtectControlGroups=yes"}},
	{name: "ProtectClock", lines: []string{"ProtectClock=yes"}},
	{name: "ProtectHostname", lines: []string{"ProtectHostname=yes"}},
	{name: "RestrictNamespaces", lines: []string{"RestrictNamespaces=yes"}},
	{name: "RestrictRealtime", lines: []string{"RestrictRealtime=yes"}},
	{name: "RestrictSUIDSGID", lines: []string{"RestrictSUIDSGID=yes"}, dynamicUser: true},
	{name: "RestrictAddressFamilies", lines: []string{"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"}},
	{name: "LockPersonality", lines: []string{"LockPersonality=yes"}},
	// On by default although JITs (node's V8, the JVM, .NET, LuaJIT, PyPy) need writable
	// executable memory and die without it: a compiled service gains real protection, and a
	// JIT service fails at its first start, visibly, and relaxes it by name. ndm services
	// always run node, so the ndm reader relaxes it for them.
	{name: "MemoryDenyWriteExecute", lines: []string{"MemoryDenyWriteExecute=yes"}},
	// EPERM instead of the default SIGSYS: a program probing an optional system call gets an
	// error it can handle instead of dying.
	{name: "SystemCallFilter", lines: []string{"SystemCallFilter=@system-service", "SystemCallErrorNumber=EPERM"}},
	{name: "SystemCallArchitectures", lines: []string{"SystemCallArchitectures=native"}},
	{name: "CapabilityBoundingSet", lines: []string{"CapabilityBoundingSet="}},
}

// Protections lists the names a service may relax, in the order units list them.
func Protections() []string {
	names := make([]string, len(protections))
	for i, p := range protections {
		names[i] = p.name
	}
	return names
}

// relax checks a service's "relax" list.
func relax(path string, s *Service, errs *problems) {
	for i, name := range s.Relax {
		p := fmt.Sprintf("%s[%d]", path, i)
		j := slices.IndexFunc(protections, func(pr protection) bool { return pr.name == name })
		switch {
		case j < 0:
			errs.add(p, "unknown protection %q (known: %s)", name, strings.Join(Protections(), ", "))
		case slices.Index(s.Relax, name) < i:
			errs.add(p, "%s is listed twice", name)
		case protections[j].dynamicUser && s.User == "":
			errs.add(p, "%s cannot be relaxed for a dynamic user, which systemd always gives it; set user to relax it", name)
		}
	}
}

// writeSandbox writes the identity and the protections of a service. A protection that is
// not applied is still named, in a comment in its place, with the reason.
func writeSandbox(u *unitText, spec *Spec, s *Service, opts Options) {
	switch {
	case opts.User && s.User != "":
		u.comment("not set: User=%s (a user manager runs every service as its own user)", s.User)
	case opts.User:
		u.comment("not set: DynamicUser=yes (a user manager runs every service as its own user)")
	case s.User != "":
		u.set("User", s.User)
		u.set("RemoveIPC", "yes")
	default:
		u.set("DynamicUser", "yes")
		// Named, so that the check unit gets the same UID (DynamicUserName).
		u.set("User", DynamicUserName(opts.App, s.Name))
	}
	for _, d := range s.StateDirs {
		u.set("StateDirectory", stateDir(opts.App, s.Name, d))
	}
	u.set("NoNewPrivileges", "yes")
	for _, p := range protections {
		for _, line := range p.lines {
			switch {
			case slices.Contains(s.Relax, p.name) && spec.Format == FormatNDM && p.name == "MemoryDenyWriteExecute":
				u.comment("relaxed for ndm, whose services run node (its JIT needs writable executable memory): %s", line)
			case slices.Contains(s.Relax, p.name):
				u.comment("relaxed in service.json: %s", line)
			case opts.User && p.userManager != "":
				u.comment("not set: %s (%s)", line, p.userManager)
			default:
				u.b.WriteString(line + "\n")
			}
		}
	}
	u.set("UMask", "0027")
	u.set("ReadOnlyPaths", pathWord(opts.ReleaseDir))
}

// stateDir is where a state directory lives, under /var/lib (system) or $XDG_STATE_HOME
// (user): one tree per app and service, named like its units, so it outlives every release
// and is never shared with another service's dynamic user.
func stateDir(app, service, dir string) string {
	return "pushdeploy-" + app + "-" + service + "/" + dir
}
