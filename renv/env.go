package renv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// VarName is the environment variable a leaf becomes. The rule:
//
//  1. A leading "secret" segment is dropped: secret.db_password becomes DB_PASSWORD. The
//     key "secret" alone names nothing and is an error.
//  2. Every remaining segment must be non-empty and consist of ASCII letters, digits, '_'
//     and '-' only.
//  3. '-' becomes '_' and letters are upper-cased.
//  4. The segments are joined with '_': db.host becomes DB_HOST, web-app.max_conns becomes
//     WEB_APP_MAX_CONNS.
//  5. The result must not start with a digit.
//
// Anything else is an error naming the key. Different keys can give the same name (db-host,
// db_host and db.host are all DB_HOST); RenderEnv refuses that.
func VarName(key string) (string, error) {
	path := Path(key)
	if len(path) > 0 && path[0] == secretSegment {
		if len(path) == 1 {
			return "", fmt.Errorf(`key %s: a secret needs a name: put it under "secret" (secret.NAME)`, Dotted(key))
		}
		path = path[1:]
	}
	if len(path) == 0 {
		return "", errors.New("empty key: no variable name")
	}
	var b strings.Builder
	for i, seg := range path {
		if seg == "" || strings.Trim(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			return "", fmt.Errorf("key %s: %q cannot be part of a variable name (letters, digits, '_' and '-' only)", Dotted(key), seg)
		}
		if i > 0 {
			b.WriteByte('_')
		}
		b.WriteString(strings.ToUpper(strings.ReplaceAll(seg, "-", "_")))
	}
	name := b.String()
	if name[0] >= '0' && name[0] <= '9' {
		return "", fmt.Errorf("key %s: variable name %s starts with a digit", Dotted(key), name)
	}
	return name, nil
}

// RenderEnv renders l as an environment file that systemd's EnvironmentFile= and a POSIX
// shell (`set -a; . FILE`) both read back to exactly the same values: one NAME="value" line
// per leaf, sorted by NAME, the value inside double quotes with only '\', '"', '$' and '`'
// escaped with a backslash and everything else literal, newlines included. Neither reader
// expands anything in it: no $VAR, no `command`, no systemd %-specifier.
//
// The value of a JSON string is its text; of null, empty; of a number or boolean, its JSON
// text as stored (1.10 stays 1.10); of an array or empty object, its compact JSON. The leaf
// "secret" holding an empty object (a document with no secrets yet) renders nothing.
//
// header, when not empty, comes first, each of its lines as a comment ("# " + line), split
// at '\r' as well as '\n' and never ending in a backslash, since systemd reads comments so.
//
// The errors, all of them joined, each naming its dotted key: a key VarName refuses, two
// keys giving the same variable name, and a value systemd cannot carry (a NUL byte, or
// text that is not UTF-8, which systemd would silently drop). On error there is no output.
func RenderEnv(l Leaves, header string) ([]byte, error) {
	type entry struct{ name, value string }
	var entries []entry
	var errs []error
	byName := map[string]string{}
	for _, k := range l.Keys() {
		if k == secretSegment && string(bytes.TrimSpace(l[k])) == "{}" {
			continue
		}
		name, err := VarName(k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, ok := byName[name]; ok {
			errs = append(errs, fmt.Errorf("keys %s and %s: both become %s", Dotted(other), Dotted(k), name))
			continue
		}
		byName[name] = k
		value, err := envValue(l[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("key %s: %w", Dotted(k), err))
			continue
		}
		entries = append(entries, entry{name, value})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })

	var b bytes.Buffer
	if header != "" {
		header = strings.ReplaceAll(strings.ReplaceAll(header, "\r\n", "\n"), "\r", "\n")
		for line := range strings.SplitSeq(strings.TrimSuffix(header, "\n"), "\n") {
			b.WriteString(commentLine(line))
		}
	}
	for _, e := range entries {
		b.WriteString(e.name + `="` + envEscaper.Replace(e.value) + "\"\n")
	}
	return b.Bytes(), nil
}

// commentLine is line as a comment line of an environment file. systemd ends a comment at
// '\r' too (RenderEnv splits lines there) and continues it past a newline escaped with a
// backslash, which would hide the next line from systemd but not from a shell: a line
// ending in a backslash gets a space after it.
func commentLine(line string) string {
	line = strings.TrimRight("# "+line, " \t")
	if strings.HasSuffix(line, `\`) {
		line += " "
	}
	return line + "\n"
}

var envEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")

// envValue is the text a leaf's JSON value v stands for in an environment file.
func envValue(v json.RawMessage) (string, error) {
	switch {
	case !json.Valid(v):
		return "", errors.New("value is not valid JSON")
	case !utf8.Valid(v):
		return "", errors.New("value is not valid UTF-8, which systemd would drop")
	}
	var s string
	switch kind(v) {
	case "a string":
		if err := json.Unmarshal(v, &s); err != nil {
			return "", err
		}
	case "null":
	default:
		s = string(compact(v))
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", errors.New("value contains a NUL byte, which an environment variable cannot carry")
	}
	return s, nil
}

// ParseEnv reads back an environment file RenderEnv wrote, for checks and tests: comment
// lines (starting with '#') and empty lines are skipped, and every NAME="value" entry, which
// may span lines, gives name → value. Anything RenderEnv does not write is an error naming
// the line: a line that is not an entry, a bad name, an unquoted value, a backslash before
// anything but '\', '"', '$' or '`', text after the closing quote, a missing closing quote,
// and a name given twice.
func ParseEnv(data []byte) (map[string]string, error) {
	vars := map[string]string{}
	line := 1
	for len(data) > 0 {
		if data[0] == '\n' || data[0] == '#' {
			_, rest, _ := bytes.Cut(data, []byte("\n"))
			data, line = rest, line+1
			continue
		}
		name, rest, ok := bytes.Cut(data, []byte("="))
		switch {
		case !ok || bytes.IndexByte(name, '\n') >= 0:
			return nil, fmt.Errorf("line %d: not NAME=\"value\"", line)
		case !validName(string(name)):
			return nil, fmt.Errorf("line %d: %q is not a variable name", line, name)
		case len(rest) == 0 || rest[0] != '"':
			return nil, fmt.Errorf("line %d: %s: value not in double quotes", line, name)
		case hasKey(vars, string(name)):
			return nil, fmt.Errorf("line %d: %s set twice", line, name)
		}
		start := line
		var value strings.Builder
		i := 1
		for ; i < len(rest) && rest[i] != '"'; i++ {
			switch c := rest[i]; {
			case c == '\\' && i+1 < len(rest) && strings.IndexByte("\\\"$`", rest[i+1]) >= 0:
				i++
				value.WriteByte(rest[i])
			case c == '\\':
				return nil, fmt.Errorf("line %d: %s: a backslash must escape one of \\ \" $ `", line, name)
			default:
				if c == '\n' {
					line++
				}
				value.WriteByte(c)
			}
		}
		if i == len(rest) {
			return nil, fmt.Errorf("line %d: %s: no closing quote", start, name)
		}
		rest = rest[i+1:]
		if len(rest) > 0 && rest[0] != '\n' {
			return nil, fmt.Errorf("line %d: %s: text after the closing quote", line, name)
		}
		if len(rest) > 0 {
			rest, line = rest[1:], line+1
		}
		vars[string(name)] = value.String()
		data = rest
	}
	return vars, nil
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// validName reports whether s is a variable name systemd and a shell both take: ASCII
// letters, digits and '_', not starting with a digit.
func validName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == ""
}
