package renv

import (
	"errors"
	"fmt"
	"strings"
)

// Keys: a leaf's path is its segments; its key (in Leaves and in etcd) escapes each segment
// and joins them with "/"; its dotted form is how messages show it and the CLI takes it.

// EscapeSegment escapes '%' as "%25" and '/' as "%2F", and nothing else, so that any JSON
// member name is one segment of a leaf key (and of an etcd key) and prefixes of keys are
// prefixes of paths.
func EscapeSegment(s string) string {
	return segmentEscaper.Replace(s)
}

// UnescapeSegment reverses EscapeSegment. It fails on a '/' and on a '%' that does not
// start "%25" or "%2F" (upper case only: each segment has exactly one escaped form).
func UnescapeSegment(s string) (string, error) {
	if !strings.ContainsAny(s, "%/") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '/':
			return "", fmt.Errorf("unescape segment %q: '/' at byte %d", s, i)
		case s[i] != '%':
			b.WriteByte(s[i])
		case strings.HasPrefix(s[i:], "%25"):
			b.WriteByte('%')
			i += 2
		case strings.HasPrefix(s[i:], "%2F"):
			b.WriteByte('/')
			i += 2
		default:
			return "", fmt.Errorf("unescape segment %q: bad escape at byte %d (only %%25 and %%2F)", s, i)
		}
	}
	return b.String(), nil
}

// Key is the leaf key of path: its segments escaped with EscapeSegment, joined with "/".
func Key(path []string) string {
	esc := make([]string, len(path))
	for i, s := range path {
		esc[i] = EscapeSegment(s)
	}
	return strings.Join(esc, "/")
}

// Path is the inverse of Key: key split on "/", each segment unescaped. A segment with a
// malformed escape (not written by Key) is kept as it is. Path("") is nil.
func Path(key string) []string {
	if key == "" {
		return nil
	}
	segs := strings.Split(key, "/")
	for i, s := range segs {
		if u, err := UnescapeSegment(s); err == nil {
			segs[i] = u
		}
	}
	return segs
}

// Dotted is a leaf key as messages show it and ParseKey reads it back: its path's segments
// joined with ".", each '.' and '\' inside a segment escaped with a backslash
// (db/host → db.host; "a.b"/"c" → a\.b.c).
func Dotted(key string) string {
	return dotted(Path(key))
}

// ParseKey parses a key as the CLI takes it: segments separated by ".", where `\.` is a
// literal dot and `\\` a backslash ("db.host" → ["db", "host"], `a\.b` → ["a.b"]). An empty
// key, an empty segment and any other backslash are errors quoting the key.
func ParseKey(key string) ([]string, error) {
	if key == "" {
		return nil, errors.New(`key "": empty`)
	}
	var segs []string
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		switch c := key[i]; c {
		case '\\':
			if i+1 == len(key) || (key[i+1] != '.' && key[i+1] != '\\') {
				return nil, fmt.Errorf(`key %q: a backslash must be followed by "." or "\" (byte %d)`, key, i)
			}
			i++
			b.WriteByte(key[i])
		case '.':
			segs = append(segs, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	segs = append(segs, b.String())
	for i, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("key %q: empty segment %d", key, i+1)
		}
	}
	return segs, nil
}

// dotted is path as ParseKey reads it: segments joined with ".", each '.' and '\' in a
// segment escaped with a backslash.
func dotted(path []string) string {
	esc := make([]string, len(path))
	for i, s := range path {
		esc[i] = dottedEscaper.Replace(s)
	}
	return strings.Join(esc, ".")
}

var dottedEscaper = strings.NewReplacer(`\`, `\\`, ".", `\.`)
