package renv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

var segmentEscaper = strings.NewReplacer("%", "%25", "/", "%2F")

// Flatten turns a document, which must be one JSON object, into its leaves. Non-empty
// objects are walked into; every other value (string, number, boolean, null, array, empty
// object) is a leaf, kept as json.Compact of its original bytes, so number text (1.0, 1e3,
// 12345678901234567890) and string escapes come back exactly. Errors, prefixed "document: "
// and naming the dotted path where they apply: not a JSON object (saying what it is),
// invalid JSON, an empty member name, a member name twice in one object, and data after the
// object.
func Flatten(doc []byte) (Leaves, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err == io.EOF {
		return nil, errors.New("document: empty, want a JSON object")
	} else if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
		return nil, fmt.Errorf("document: byte %d: %w", se.Offset, err)
	} else if err != nil {
		return nil, fmt.Errorf("document: %w", err)
	}
	if k := kind(raw); k != "an object" {
		return nil, fmt.Errorf("document: got %s, want a JSON object", k)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("document: data after the object (after byte %d)", end)
	}
	l := Leaves{}
	if err := flattenInto(l, nil, raw); err != nil {
		return nil, fmt.Errorf("document: %w", err)
	}
	return l, nil
}

// flattenInto adds the leaves of the JSON object obj, found at path, to l.
func flattenInto(l Leaves, path []string, obj []byte) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if name == "" {
			return fmt.Errorf("%sempty member name", at(path))
		}
		if seen[name] {
			return fmt.Errorf("%smember %q twice", at(path), name)
		}
		seen[name] = true
		p := append(slices.Clip(path), name)
		if isNonEmptyObject(v) {
			if err := flattenInto(l, p, v); err != nil {
				return err
			}
			continue
		}
		l[Key(p)] = compact(v)
	}
	return nil
}

// at is path in dotted form followed by ": ", or "" for the root.
func at(path []string) string {
	if len(path) == 0 {
		return ""
	}
	return dotted(path) + ": "
}

// Document rebuilds the JSON document: members sorted by name, indented with two spaces,
// with a trailing newline ("{}\n" when l is empty). Leaf values are emitted as stored, so
// numbers and strings keep their exact text. Leaves that are not a valid tree (as Set never
// makes them, but a store could hold) still give valid JSON: a leaf hides the leaves under
// it, and a value that is not JSON becomes a JSON string of its bytes.
func (l Leaves) Document() []byte {
	var b bytes.Buffer
	l.tree().write(&b)
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return append(b.Bytes(), '\n') // unreachable: write emits valid JSON
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// tree is a document being rebuilt: member name → json.RawMessage or tree.
type tree map[string]any

func (l Leaves) tree() tree {
	root := tree{}
	for _, k := range l.Keys() {
		path := Path(k)
		if len(path) == 0 {
			continue
		}
		t := root
		for _, s := range path[:len(path)-1] {
			switch c := t[s].(type) {
			case nil:
				n := tree{}
				t[s] = n
				t = n
			case tree:
				t = c
			default:
				t = nil
			}
			if t == nil {
				break
			}
		}
		if t != nil && t[path[len(path)-1]] == nil {
			t[path[len(path)-1]] = l[k]
		}
	}
	return root
}

func (t tree) write(b *bytes.Buffer) {
	b.WriteByte('{')
	for i, name := range slices.Sorted(maps.Keys(t)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(quote(name))
		b.WriteByte(':')
		switch v := t[name].(type) {
		case tree:
			v.write(b)
		case json.RawMessage:
			if json.Valid(v) {
				b.Write(v)
			} else {
				b.Write(quote(string(v)))
			}
		}
	}
	b.WriteByte('}')
}

// Lookup returns the leaf at path, as its compact JSON, or else the part of the document
// under path as a Document(). It reports false when nothing is at or under path. An empty
// path is the whole document, which always exists.
func (l Leaves) Lookup(path []string) ([]byte, bool) {
	if len(path) == 0 {
		return l.Document(), true
	}
	k := Key(path)
	if v, ok := l[k]; ok {
		return slices.Clone(v), true
	}
	sub := Leaves{}
	for key, v := range l {
		if rest, ok := strings.CutPrefix(key, k+"/"); ok {
			sub[rest] = v
		}
	}
	if len(sub) == 0 {
		return nil, false
	}
	return sub.Document(), true
}

// Set sets the value at path, keeping l a valid tree: it first removes every leaf that
// conflicts, the leaf at any proper ancestor of path and every leaf at or under path. A
// non-empty object value is flattened under path (as Flatten does); any other value is
// one leaf. An empty path sets the whole document, which takes an object. Errors, with l
// unchanged: v is not valid JSON, path has an empty segment, or v's members break
// Flatten's rules.
func (l Leaves) Set(path []string, v json.RawMessage) error {
	if !json.Valid(v) {
		return fmt.Errorf("set %s: value is not valid JSON", dotted(path))
	}
	if i := slices.Index(path, ""); i >= 0 {
		return fmt.Errorf("set %s: empty segment %d", dotted(path), i+1)
	}
	add := Leaves{}
	switch {
	case len(path) == 0 && kind(v) != "an object":
		return fmt.Errorf("set the whole document: got %s, want a JSON object", kind(v))
	case isNonEmptyObject(v):
		if err := flattenInto(add, path, v); err != nil {
			return fmt.Errorf("set %s: %w", dotted(path), err)
		}
	case len(path) > 0:
		add[Key(path)] = compact(v)
	}
	for i := 1; i < len(path); i++ {
		delete(l, Key(path[:i]))
	}
	l.Unset(path)
	maps.Copy(l, add)
	return nil
}

// Unset removes the leaf at path and every leaf under it (all of them for an empty path),
// and reports whether anything was removed.
func (l Leaves) Unset(path []string) bool {
	k := Key(path)
	removed := false
	for key := range l {
		if len(path) == 0 || key == k || strings.HasPrefix(key, k+"/") {
			delete(l, key)
			removed = true
		}
	}
	return removed
}

// Clone returns a deep copy of l (nil for nil).
func (l Leaves) Clone() Leaves {
	if l == nil {
		return nil
	}
	c := make(Leaves, len(l))
	for k, v := range l {
		c[k] = slices.Clone(v)
	}
	return c
}

// Equal reports whether l and o have the same keys with byte-identical values.
func (l Leaves) Equal(o Leaves) bool {
	return maps.EqualFunc(l, o, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) })
}

// Keys returns l's keys, sorted.
func (l Leaves) Keys() []string {
	return slices.Sorted(maps.Keys(l))
}

// ParseValue turns a value given on the command line into JSON. Unless asString, a value
// that is valid JSON once trimmed of white space is taken as JSON, compacted (42, true,
// null, "x", [1,2], {"a":1}). Anything else, and every value when asString, is the JSON
// string of s as given ("abc", "", "a=b", " padded ", "{bad json").
func ParseValue(s string, asString bool) json.RawMessage {
	if t := []byte(strings.TrimSpace(s)); !asString && len(t) > 0 && json.Valid(t) {
		return compact(t)
	}
	return quote(s)
}

// kind names the type of the JSON value v for messages ("an object", "null", …).
func kind(v []byte) string {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// isNonEmptyObject reports whether the valid JSON value v is an object with members.
func isNonEmptyObject(v []byte) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && v[0] == '{' && bytes.TrimSpace(v[1:])[0] != '}'
}

// compact is json.Compact of the valid JSON value v.
func compact(v []byte) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return slices.Clone(v)
	}
	return b.Bytes()
}

// quote is s as a JSON string, without Go's HTML escaping of <, > and &.
func quote(s string) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
