package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"
)

// Line is one line of a deploy's log (zerolog JSON), as the page shows it.
type Line struct {
	Time    time.Time
	Level   string
	Message string
	Fields  []Field
	Raw     string // a line that is not JSON, as is
	Next    int64  // byte offset after the line
}

// Field is one of a log line's fields besides time, level and message.
type Field struct{ Key, Value string }

// hidden are the fields every line of a deploy's log carries: the page says them once.
var hidden = map[string]bool{"time": true, "level": true, "message": true, "app": true, "deploy": true, "component": true}

// parseLine reads one JSON log line.
func parseLine(b []byte, next int64) Line {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return Line{Raw: string(b), Next: next}
	}
	l := Line{Next: next}
	str := func(k string) string {
		var s string
		json.Unmarshal(m[k], &s)
		return s
	}
	l.Time, _ = time.Parse(time.RFC3339Nano, str("time"))
	l.Level, l.Message = str("level"), str("message")
	keys := make([]string, 0, len(m))
	for k := range m {
		if !hidden[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		var s string
		if json.Unmarshal(v, &s) != nil {
			var x any
			json.Unmarshal(v, &x)
			switch x := x.(type) {
			case []any:
				parts := make([]string, len(x))
				for i, p := range x {
					parts[i] = fmt.Sprint(p)
				}
				s = strings.Join(parts, ", ")
			default:
				s = strings.TrimSpace(string(v))
			}
		}
		l.Fields = append(l.Fields, Field{k, s})
	}
	return l
}

// field returns the value of the line's field k, or "".
func (l Line) field(k string) string {
	for _, f := range l.Fields {
		if f.Key == k {
			return f.Value
		}
	}
	return ""
}

// Step is a stage a deploy went through, from the "deploy status" lines of its log, or a
// batch of its rollout.
type Step struct {
	Name  string // fetching, running-script, starting, batch 2 of 3, succeeded…
	At    time.Time
	State string // done, running, failed
}

// stepOf returns the step a line starts, if it starts one.
func stepOf(l Line) (Step, bool) {
	switch l.Message {
	case "deploy status":
		return Step{Name: l.field("status"), At: l.Time}, true
	case "batch started":
		return Step{Name: "batch " + l.field("batch") + " of " + l.field("of"), At: l.Time}, true
	case "batch reverting":
		return Step{Name: "reverting " + l.field("instances"), At: l.Time}, true
	}
	return Step{}, false
}

// steps lists the steps of a deploy's log; each but the last is done, the last is
// running unless the deploy is final.
func steps(lines []Line) []Step {
	var out []Step
	for _, l := range lines {
		if s, ok := stepOf(l); ok {
			out = append(out, s)
		}
	}
	return out
}

// rowHTML renders one log line as the table row the page and the event stream use.
func rowHTML(l Line) (template.HTML, error) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, "row", l); err != nil {
		return "", err
	}
	return template.HTML(b.String()), nil
}

// stepHTML renders one step as the list item the page and the event stream use.
func stepHTML(s Step) (template.HTML, error) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, "step", s); err != nil {
		return "", err
	}
	return template.HTML(b.String()), nil
}
