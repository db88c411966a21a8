package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// A yaml.v3 error names a line and a Go type ("line 7: cannot unmarshal !!str `abc` into
// int"); people think in field paths (apps.web.keep_releases). pathErrors maps each error
// of a failed decode of data to the path of the field at its line.

var (
	lineRE      = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	notFoundRE  = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	unmarshalRE = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
)

// yamlTypes are the configuration's structs by the name yaml.v3 gives them in errors, for
// listing the fields a misspelt one could have meant.
var yamlTypes = map[string]reflect.Type{}

func init() {
	for _, v := range []any{Config{}, App{}, Systemd{}, HAProxy{}, GitHub{}, AppEnv{}, Etcd{}, UI{}, Notify{}} {
		t := reflect.TypeOf(v)
		yamlTypes["config."+t.Name()] = t
	}
}

// node is a key or scalar value of the document, with the field path it stands for.
type node struct {
	line  int
	path  string
	value string
	key   bool
}

// pathErrors rewrites err, the error of decoding data, so that each message starts with the
// path of the field it is about, keeping the line. Messages it cannot place stay as they are.
func pathErrors(data []byte, err error) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err // a syntax error: a line is all there is
	}
	var nodes []node
	walkYAML(&root, "", &nodes)
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]error, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, errors.New(placeYAML(nodes, m)))
	}
	return errors.Join(out...)
}

func placeYAML(nodes []node, msg string) string {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]
	find := func(value string, key bool) *node {
		var best *node
		for i := range nodes {
			n := &nodes[i]
			if n.line != line || n.key != key {
				continue
			}
			if n.value == value {
				return n
			}
			if best == nil {
				best = n // the outermost at that line
			}
		}
		return best
	}
	if f := notFoundRE.FindStringSubmatch(rest); f != nil {
		if n := find(f[1], true); n != nil {
			known := ""
			if t, ok := yamlTypes[f[2]]; ok {
				known = " (known: " + strings.Join(yamlFields(t), ", ") + ")"
			}
			return fmt.Sprintf("%s: unknown field%s (line %d)", n.path, known, line)
		}
	}
	if u := unmarshalRE.FindStringSubmatch(rest); u != nil {
		n := find(u[2], false)
		if u[1] == "seq" || u[1] == "map" {
			n = find("", true) // a collection stands under the key of that line
		}
		if n != nil {
			return fmt.Sprintf("%s: want %s, got %s (line %d)", n.path, goTypeWords(u[3]), tagWords(u[1], u[2]), line)
		}
	}
	if n := find("", true); n != nil {
		return fmt.Sprintf("%s: %s (line %d)", n.path, rest, line)
	}
	return msg
}

// walkYAML lists n's keys and scalar values with their paths.
func walkYAML(n *yaml.Node, path string, out *[]node) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walkYAML(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			*out = append(*out, node{line: k.Line, path: p, value: k.Value, key: true})
			walkYAML(v, p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			// A sequence item's line stands for the item when it is a scalar.
			walkYAML(c, p, out)
		}
	case yaml.ScalarNode:
		*out = append(*out, node{line: n.Line, path: path, value: n.Value})
	}
}

// yamlFields lists the yaml names of t's fields.
func yamlFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// goTypeWords says what a Go type in a yaml.v3 error expects, in the config's words.
func goTypeWords(t string) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)).String():
		return "a duration such as 30s or 1m30s"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "a whole number"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "config."):
		return "a mapping of fields"
	}
	return t
}

// tagWords says what the document holds, from a yaml tag and its value.
func tagWords(tag, value string) string {
	switch tag {
	case "str":
		return strconv.Quote(value)
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	}
	return value
}
