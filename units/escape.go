package units

import (
	"fmt"
	"strings"
)

// Escaping for the three kinds of values a unit holds. Every function assumes its input
// passed text(): no control characters, so no newline can end a line early, and the only
// characters left to care about are the ones below.
//
// The rules, from systemd.syntax(7), systemd.service(5) "Command lines" and systemd.unit(5)
// "Specifiers", as systemd 252 applies them:
//   - "%" starts a specifier in nearly every directive; "%%" is a literal "%".
//   - ExecStart= words and Environment= assignments are unquoted ("…" or '…') and C-unescaped
//     (\\ and \" among others) before specifiers are expanded.
//   - ExecStart= then expands $VAR and ${VAR} when the process starts; "$$" is a literal "$".
//     A lone unquoted ";" separates commands.
//   - Paths (WorkingDirectory=, EnvironmentFile=) are taken whole, with specifiers expanded but
//     no unquoting; validation already refused quotes and backslashes in them.

// specifiers makes every "%" literal.
func specifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// execWord renders one word of an ExecStart= line so the process receives exactly s. Plain
// words stay readable; anything else is double-quoted with C escapes.
func execWord(s string) string {
	s = strings.ReplaceAll(specifiers(s), "$", "$$")
	return quote(s, s == ";")
}

// execLine renders a whole argv, program first.
func execLine(argv []string) string {
	words := make([]string, len(argv))
	for i, w := range argv {
		words[i] = execWord(w)
	}
	return strings.Join(words, " ")
}

// envAssignment renders one Environment= item, KEY=value; "$" needs no escape there.
func envAssignment(key, value string) string {
	return quote(key+"="+specifiers(value), false)
}

// pathValue renders a path for directives that take it whole.
func pathValue(p string) string { return specifiers(p) }

// pathWord renders a path as one item of a space-separated list (ReadOnlyPaths=).
func pathWord(p string) string { return quote(specifiers(p), false) }

// quote double-quotes s when systemd would otherwise split it or read quotes and escapes in
// it, or when force is set.
func quote(s string, force bool) string {
	if !force && s != "" && !strings.ContainsAny(s, " \"'\\") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// unitText builds a unit file line by line: header comments, then sections separated by a
// blank line.
type unitText struct {
	b        strings.Builder
	sections int
}

func (u *unitText) comment(format string, args ...any) {
	fmt.Fprintf(&u.b, "# "+format+"\n", args...)
}

func (u *unitText) section(name string) {
	if u.sections > 0 {
		u.b.WriteString("\n")
	}
	u.sections++
	fmt.Fprintf(&u.b, "[%s]\n", name)
}

func (u *unitText) set(key, value string) {
	fmt.Fprintf(&u.b, "%s=%s\n", key, value)
}

func (u *unitText) String() string { return u.b.String() }
