package renv

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (go test -update creates it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// decodeNumbers decodes JSON keeping numbers' text, to compare documents semantically.
func decodeNumbers(t *testing.T, doc []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", doc, err)
	}
	return v
}

func TestEscapeSegment_RoundTrip(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a/b", "a%2Fb"},
		{"100%", "100%25"},
		{"%2F", "%252F"},
		{"/%/", "%2F%25%2F"},
		{"a.b c", "a.b c"},
		{"", ""},
	} {
		if got := EscapeSegment(c.in); got != c.want {
			t.Errorf("EscapeSegment(%q): got %q, want %q", c.in, got, c.want)
		}
		if got, err := UnescapeSegment(c.want); err != nil || got != c.in {
			t.Errorf("UnescapeSegment(%q): got %q, %v, want %q", c.want, got, err, c.in)
		}
	}
}

func TestUnescapeSegment_Errors(t *testing.T) {
	for _, s := range []string{"a/b", "%", "%2", "%2f", "%41", "a%zz"} {
		if got, err := UnescapeSegment(s); err == nil {
			t.Errorf("UnescapeSegment(%q): got %q, want an error", s, got)
		}
	}
}

func TestKey_Path(t *testing.T) {
	for _, c := range []struct {
		path []string
		key  string
	}{
		{[]string{"db", "host"}, "db/host"},
		{[]string{"a/b", "c%d", "e.f g"}, "a%2Fb/c%25d/e.f g"},
		{[]string{"x"}, "x"},
	} {
		if got := Key(c.path); got != c.key {
			t.Errorf("Key(%q): got %q, want %q", c.path, got, c.key)
		}
		if got := Path(c.key); !slices.Equal(got, c.path) {
			t.Errorf("Path(%q): got %q, want %q", c.key, got, c.path)
		}
	}
	if got := Path("a%zz/b%2f"); !slices.Equal(got, []string{"a%zz", "b%2f"}) {
		t.Errorf("Path with malformed escapes: got %q, want them kept literally", got)
	}
}

func TestFlatten_Leaves(t *testing.T) {
	doc := `{
	  "db": {"host": "localhost", "port": 5432, "ratio": 1.10, "big": 12345678901234567890,
	         "huge": 1e400, "neg0": -0, "tls": false, "pool": null},
	  "hosts": [ {"a": [1, 2.0]}, [] ],
	  "empty": {}, "nested": {"a": {"b": {}}},
	  "name": "caf\u00e9 日本 🚀", "blank": "",
	  "a/b": 1, "50%": 2, "x.y": 3, "with space": 4
	}`
	want := Leaves{
		"db/host": []byte(`"localhost"`), "db/port": []byte(`5432`), "db/ratio": []byte(`1.10`),
		"db/big": []byte(`12345678901234567890`), "db/huge": []byte(`1e400`), "db/neg0": []byte(`-0`),
		"db/tls": []byte(`false`), "db/pool": []byte(`null`),
		"hosts": []byte(`[{"a":[1,2.0]},[]]`),
		"empty": []byte(`{}`), "nested/a/b": []byte(`{}`),
		"name": []byte(`"caf\u00e9 日本 🚀"`), "blank": []byte(`""`),
		"a%2Fb": []byte(`1`), "50%25": []byte(`2`), "x.y": []byte(`3`), "with space": []byte(`4`),
	}
	got, err := Flatten([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(want) {
		t.Errorf("got %s, want %s", got.Document(), want.Document())
		for _, k := range want.Keys() {
			if !bytes.Equal(got[k], want[k]) {
				t.Errorf("%s: got %s, want %s", k, got[k], want[k])
			}
		}
	}
}

func TestFlatten_RoundTrip(t *testing.T) {
	for name, doc := range map[string]string{
		"types":    `{"s":"x","n":-1.5e-3,"t":true,"f":false,"z":null,"a":[1,"2",null,{"k":[[]]}],"o":{}}`,
		"nesting":  `{"a":[{"b":[{"c":[1,[2,{"d":{}}]]}]}],"x":{"y":{"z":[{"w":[]}]}}}`,
		"unicode":  `{"é":"日本","emoji":"😀 🚀","esc":"\u0000\u001f\"\\\/\b\f\n\r\t\u2028","日本":{"é":"\ud83d\ude00"}}`,
		"empties":  `{"s":"","a":[],"o":{},"deep":{"a":{"b":{}}},"arr":[{},[],""]}`,
		"numbers":  `{"big":12345678901234567890,"p":1.10,"neg0":-0,"huge":1e400,"e":1E+3,"small":-0.000001}`,
		"names":    `{"a/b":{"c%d":1},"%2F":2,"x.y":{"z\\w":3},"with space":{" ":4},"\\":5}`,
		"empty":    `{}`,
		"indented": "{\n  \"a\" : [ 1 , 2 ] ,\n\t\"b\" : { \"c\" : \"d\" }\n}\n",
	} {
		t.Run(name, func(t *testing.T) {
			l, err := Flatten([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			out := l.Document()
			if !bytes.HasSuffix(out, []byte("}\n")) {
				t.Errorf("Document: got %q, want it to end with a newline", out)
			}
			if got, want := decodeNumbers(t, out), decodeNumbers(t, []byte(doc)); !reflect.DeepEqual(got, want) {
				t.Errorf("Document: got %s, want the same value as %s", out, doc)
			}
			again, err := Flatten(out)
			if err != nil {
				t.Fatalf("Flatten(Document()): %v", err)
			}
			if !again.Equal(l) {
				t.Errorf("Flatten(Document()): got %v, want %v", again, l)
			}
		})
	}
}

func TestFlatten_Errors(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`[1,2]`, "document: got an array, want a JSON object"},
		{`"x"`, "document: got a string, want a JSON object"},
		{`1.5`, "document: got a number, want a JSON object"},
		{`true`, "document: got a boolean, want a JSON object"},
		{`null`, "document: got null, want a JSON object"},
		{"  \n", "document: empty, want a JSON object"},
		{`{"a":1} {"b":2}`, "document: data after the object"},
		{`{"a":1} x`, "document: data after the object"},
		{`{"a":1,}`, "document: byte 8: invalid character '}'"},
		{`{"a":1`, "document: unexpected EOF"},
		{`{"a":1,"a":2}`, `document: member "a" twice`},
		{`{"db":{"hosts":{"x":1,"\u0078":2}}}`, `document: db.hosts: member "x" twice`},
		{`{"":1}`, "document: empty member name"},
		{`{"d.b":{"x":{"":1}}}`, `document: d\.b.x: empty member name`},
	} {
		l, err := Flatten([]byte(c.doc))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Flatten(%s): got %v, %v, want error %q", c.doc, l, err, c.want)
		}
	}
}

func TestLeaves_Document(t *testing.T) {
	l, err := Flatten([]byte(`{"web":{"port":8080,"hosts":["a.example","b.example"],"tls":{}},
		"db":{"url":"postgres://db/app?sslmode=require","pool":{"max":20,"idle_timeout":"30s"}},
		"feature-flags":{"beta":true,"ratio":0.10},"note":null,"secret":{"db_password":"p\"w$"}}`))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "document.golden", l.Document())
	if got := (Leaves{}).Document(); string(got) != "{}\n" {
		t.Errorf("empty Leaves: got %q, want %q", got, "{}\n")
	}
	// Not a valid tree: the leaf at "a" hides "a/b"; a value that is not JSON is a string.
	bad := Leaves{"a": []byte(`1`), "a/b": []byte(`2`), "c": []byte(`nope`)}
	if got, want := string(bad.Document()), "{\n  \"a\": 1,\n  \"c\": \"nope\"\n}\n"; got != want {
		t.Errorf("invalid Leaves: got %q, want %q", got, want)
	}
}

func TestLeaves_Lookup(t *testing.T) {
	l, err := Flatten([]byte(`{"db":{"host":"h","port":1,"opts":{"a":[1]}},"dbx":2}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path []string
		want string
		ok   bool
	}{
		{[]string{"db", "host"}, `"h"`, true},
		{[]string{"db", "opts", "a"}, `[1]`, true},
		{[]string{"db", "opts"}, "{\n  \"a\": [\n    1\n  ]\n}\n", true},
		{[]string{"db"}, "{\n  \"host\": \"h\",\n  \"opts\": {\n    \"a\": [\n      1\n    ]\n  },\n  \"port\": 1\n}\n", true},
		{[]string{"d"}, "", false},
		{[]string{"db", "host", "x"}, "", false},
		{nil, string(l.Document()), true},
	} {
		got, ok := l.Lookup(c.path)
		if string(got) != c.want || ok != c.ok {
			t.Errorf("Lookup(%q): got %q, %v, want %q, %v", c.path, got, ok, c.want, c.ok)
		}
	}
}

func TestLeaves_Set(t *testing.T) {
	start := Leaves{"a": []byte(`1`), "b/c": []byte(`2`), "b/d/e": []byte(`3`), "bc": []byte(`4`), "b%2Fc": []byte(`5`)}
	for _, c := range []struct {
		name  string
		path  []string
		value string
		want  Leaves
	}{
		{"new leaf", []string{"x"}, ` "y" `, Leaves{"x": []byte(`"y"`)}},
		{"replace leaf", []string{"a"}, `[1, 2]`, Leaves{"a": []byte(`[1,2]`)}},
		{"leaf over subtree", []string{"b"}, `true`, Leaves{"b": []byte(`true`), "b/c": nil, "b/d/e": nil}},
		{"under a leaf", []string{"a", "x", "y"}, `1`, Leaves{"a": nil, "a/x/y": []byte(`1`)}},
		{"object flattened", []string{"b"}, `{"n": {"m": 1.0}, "e": {}}`,
			Leaves{"b/c": nil, "b/d/e": nil, "b/n/m": []byte(`1.0`), "b/e": []byte(`{}`)}},
		{"empty object is a leaf", []string{"b", "d"}, `{}`, Leaves{"b/d/e": nil, "b/d": []byte(`{}`)}},
		{"escaped segment", []string{"b/c"}, `6`, Leaves{"b%2Fc": []byte(`6`)}},
		{"whole document", nil, `{"z":1}`, Leaves{"a": nil, "b/c": nil, "b/d/e": nil, "bc": nil, "b%2Fc": nil, "z": []byte(`1`)}},
		{"empty document", nil, `{}`, Leaves{"a": nil, "b/c": nil, "b/d/e": nil, "bc": nil, "b%2Fc": nil}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := start.Clone()
			if err := l.Set(c.path, json.RawMessage(c.value)); err != nil {
				t.Fatal(err)
			}
			want := start.Clone()
			for k, v := range c.want {
				if v == nil {
					delete(want, k)
				} else {
					want[k] = v
				}
			}
			if !l.Equal(want) {
				t.Errorf("got %v, want %v", l.Document(), want.Document())
			}
		})
	}
}

func TestLeaves_SetErrors(t *testing.T) {
	for _, c := range []struct {
		path        []string
		value, want string
	}{
		{[]string{"a"}, `{bad`, "set a: value is not valid JSON"},
		{[]string{"a"}, ``, "set a: value is not valid JSON"},
		{[]string{"a"}, `1 2`, "set a: value is not valid JSON"},
		{[]string{"a", ""}, `1`, "set a.: empty segment 2"},
		{nil, `[1]`, "set the whole document: got an array, want a JSON object"},
		{[]string{"a"}, `{"b":{"c":1,"c":2}}`, `set a: a.b: member "c" twice`},
		{[]string{"a"}, `{"":1}`, `set a: a: empty member name`},
	} {
		l := Leaves{"a": []byte(`1`)}
		err := l.Set(c.path, json.RawMessage(c.value))
		if err == nil || err.Error() != c.want {
			t.Errorf("Set(%q, %s): got %v, want %q", c.path, c.value, err, c.want)
		}
		if !l.Equal(Leaves{"a": []byte(`1`)}) {
			t.Errorf("Set(%q, %s) failed but changed the leaves to %v", c.path, c.value, l)
		}
	}
}

func TestLeaves_Unset(t *testing.T) {
	start := Leaves{"a": []byte(`1`), "b/c": []byte(`2`), "b/d/e": []byte(`3`), "bc": []byte(`4`), "b%2Fc": []byte(`5`)}
	for _, c := range []struct {
		path []string
		ok   bool
		want []string
	}{
		{[]string{"a"}, true, []string{"b%2Fc", "b/c", "b/d/e", "bc"}},
		{[]string{"b"}, true, []string{"a", "b%2Fc", "bc"}},
		{[]string{"b", "d"}, true, []string{"a", "b%2Fc", "b/c", "bc"}},
		{[]string{"b/c"}, true, []string{"a", "b/c", "b/d/e", "bc"}},
		{[]string{"x"}, false, []string{"a", "b%2Fc", "b/c", "b/d/e", "bc"}},
		{[]string{"a", "x"}, false, []string{"a", "b%2Fc", "b/c", "b/d/e", "bc"}},
		{nil, true, nil},
	} {
		l := start.Clone()
		if ok := l.Unset(c.path); ok != c.ok || !slices.Equal(l.Keys(), c.want) {
			t.Errorf("Unset(%q): got %v, keys %q, want %v, %q", c.path, ok, l.Keys(), c.ok, c.want)
		}
	}
}

func TestLeaves_CloneEqual(t *testing.T) {
	l := Leaves{"a": []byte(`"x"`)}
	c := l.Clone()
	if !c.Equal(l) {
		t.Fatalf("Clone: got %v, want %v", c, l)
	}
	c["a"][1] = 'y'
	if string(l["a"]) != `"x"` {
		t.Errorf("changing the clone changed the original to %s", l["a"])
	}
	if c.Equal(l) || (Leaves{"a": []byte(`"x"`), "b": []byte(`1`)}).Equal(l) {
		t.Errorf("Equal: got true for different leaves, want false")
	}
	if got := Leaves(nil).Clone(); got != nil {
		t.Errorf("nil Clone: got %v, want nil", got)
	}
}

func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		in       string
		asString bool
		want     string
	}{
		{"42", false, `42`},
		{" 42 ", false, `42`},
		{"1.10", false, `1.10`},
		{"true", false, `true`},
		{"null", false, `null`},
		{`"quoted"`, false, `"quoted"`},
		{`[1, 2]`, false, `[1,2]`},
		{`{"a": 1}`, false, `{"a":1}`},
		{"abc", false, `"abc"`},
		{"", false, `""`},
		{"   ", false, `"   "`},
		{"a=b", false, `"a=b"`},
		{"x=1&y=<2>", false, `"x=1&y=<2>"`},
		{" padded ", false, `" padded "`},
		{"{bad json", false, `"{bad json"`},
		{"1 2", false, `"1 2"`},
		{"42", true, `"42"`},
		{`"quoted"`, true, `"\"quoted\""`},
		{" true ", true, `" true "`},
		{"日本\n", false, "\"日本\\n\""},
	} {
		if got := ParseValue(c.in, c.asString); string(got) != c.want {
			t.Errorf("ParseValue(%q, %v): got %s, want %s", c.in, c.asString, got, c.want)
		}
	}
}
