package renv

import (
	"testing"
)

// FuzzFlatten: any document either is refused with an error that starts "document: ", or
// flattens into leaves that rebuild a document which flattens into the same leaves (the
// store round-trips what it accepted), and whose every key is an etcd key path that parses
// back to itself.
func FuzzFlatten(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a":1}`, `{"a":{"b":[1,2,{"c":null}]},"d":"x"}`, `{"n":12345678901234567890,"f":1.10}`,
		`{"a/b":{"%":"%25"}}`, `{"secret":{"token":"t"}}`, `{"":1}`, `{"a":1,"a":2}`, `[]`, `{"u":"\u00e9\ud83d\ude00"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		l, err := Flatten(doc)
		if err != nil {
			if len(err.Error()) < len("document: ") || err.Error()[:len("document: ")] != "document: " {
				t.Fatalf("error %q does not start with \"document: \"", err)
			}
			return
		}
		back, err := Flatten(l.Document())
		if err != nil {
			t.Fatalf("the rebuilt document does not flatten: %v\n%s", err, l.Document())
		}
		if !back.Equal(l) {
			t.Fatalf("round trip changed the leaves:\n got %v\nwant %v", back, l)
		}
		for _, k := range l.Keys() {
			path := Path(k)
			if Key(path) != k {
				t.Fatalf("key %q splits into %q, which makes %q", k, path, Key(path))
			}
			dotted, err := ParseKey(Dotted(k))
			if err != nil {
				t.Fatalf("key %q: its dotted form %q does not parse: %v", k, Dotted(k), err)
			}
			if Key(dotted) != k {
				t.Fatalf("key %q: dotted %q parses back to %q", k, Dotted(k), dotted)
			}
		}
	})
}

// FuzzRenderEnv: leaves either render, or are refused naming a key; what renders parses
// back (ParseEnv, which is stricter than systemd) to exactly one variable per leaf.
func FuzzRenderEnv(f *testing.F) {
	for _, seed := range []string{`{"greeting":"hi","workers":4}`, `{"db":{"url":"postgres://x"},"secret":{"api_token":"$HOME\"\\"}}`,
		`{"multi":"a\nb","e":"","n":null,"arr":[1,"x"]}`, `{"PORT":1}`, `{"a-b":1,"a_b":2}`} {
		f.Add([]byte(seed), "header\nline")
	}
	f.Fuzz(func(t *testing.T, doc []byte, header string) {
		l, err := Flatten(doc)
		if err != nil {
			return
		}
		out, err := RenderEnv(l, header)
		if err != nil {
			return
		}
		vars, err := ParseEnv(out)
		if err != nil {
			t.Fatalf("rendered file does not parse back: %v\n%s", err, out)
		}
		want := len(l)
		if v, ok := l[secretSegment]; ok && string(v) == "{}" {
			want--
		}
		if len(vars) != want {
			t.Fatalf("%d variables parsed back from %d leaves:\n%s", len(vars), len(l), out)
		}
	})
}
