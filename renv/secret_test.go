package renv

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestIsSecret(t *testing.T) {
	for key, want := range map[string]bool{
		"secret/db_password": true,
		"secret/a/b":         true,
		"secret":             true,
		"secrets/x":          false,
		"secretx":            false,
		"app/secret/x":       false,
		"Secret/x":           false,
		"secret%2Fx":         false,
	} {
		if got := IsSecret(key); got != want {
			t.Errorf("IsSecret(%q): got %v, want %v", key, got, want)
		}
	}
}

func TestLeaves_Masked(t *testing.T) {
	l := Leaves{"secret/db_password": []byte(`"hunter2"`), "secret/n": []byte(`42`), "db/host": []byte(`"h"`)}
	m := l.Masked()
	want := Leaves{"secret/db_password": []byte(`"<hidden: --show-secrets shows it>"`),
		"secret/n": []byte(`"<hidden: --show-secrets shows it>"`), "db/host": []byte(`"h"`)}
	if !m.Equal(want) {
		t.Errorf("got %v, want %v", m, want)
	}
	if string(l["secret/db_password"]) != `"hunter2"` {
		t.Errorf("Masked changed the original: got %s, want \"hunter2\"", l["secret/db_password"])
	}
	if err := l.CheckNotMasked(); err != nil {
		t.Errorf("CheckNotMasked of real values: got %v, want nil", err)
	}
}

func TestLeaves_SecretValues(t *testing.T) {
	l := Leaves{"secret/db_password": []byte(`"hunter2 \u00e9"`), "secret/n": []byte(`42`), "secret/list": []byte(`[1, "a"]`),
		"secret/none": []byte(`null`), "db/host": []byte(`"not secret"`)}
	got := l.SecretValues()
	slices.Sort(got)
	if want := []string{"42", "[1,\"a\"]", "hunter2 \u00e9"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLeaves_CheckNotMasked(t *testing.T) {
	l := Leaves{"secret/a": []byte(`"<hidden: --show-secrets shows it>"`), "db/host": []byte(`"h"`),
		"secret/b.c": []byte(`"\u003chidden: --show-secrets shows it\u003e"`), "other": []byte(`"<hidden: --show-secrets shows it>"`),
		"secret/d": []byte(`"<hidden>"`)}
	err := l.CheckNotMasked()
	if !errors.Is(err, ErrMasked) {
		t.Fatalf("got %v, want an error wrapping ErrMasked", err)
	}
	for _, want := range []string{`other, secret.a, secret.b\.c:`, "--show-secrets", "overwrite the real secrets"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "secret.d") || strings.Contains(err.Error(), "db.host") {
		t.Errorf("got %q, want only the masked keys named", err)
	}
}

func TestDotted(t *testing.T) {
	for key, want := range map[string]string{
		"db/host":      "db.host",
		"a.b/c":        `a\.b.c`,
		`back\slash/x`: `back\\slash.x`,
		"a%2Fb/c%25":   "a/b.c%",
		"solo":         "solo",
	} {
		got := Dotted(key)
		if got != want {
			t.Errorf("Dotted(%q): got %q, want %q", key, got, want)
		}
		if path, err := ParseKey(got); err != nil || Key(path) != key {
			t.Errorf("ParseKey(Dotted(%q)): got %q, %v, want %q", key, Key(path), err, key)
		}
	}
}

func TestParseKey(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"db.host", []string{"db", "host"}},
		{"solo", []string{"solo"}},
		{`a\.b.c`, []string{"a.b", "c"}},
		{`a\\.b`, []string{`a\`, "b"}},
		{`a\\\.b`, []string{`a\.b`}},
		{"a/b.c%d", []string{"a/b", "c%d"}},
		{"with space. x ", []string{"with space", " x "}},
		{"日本.é", []string{"日本", "é"}},
	} {
		if got, err := ParseKey(c.in); err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseKey(%q): got %q, %v, want %q", c.in, got, err, c.want)
		}
	}
}

func TestParseKey_Errors(t *testing.T) {
	for in, want := range map[string]string{
		"":      `key "": empty`,
		"a..b":  `key "a..b": empty segment 2`,
		".a":    `key ".a": empty segment 1`,
		"a.":    `key "a.": empty segment 2`,
		".":     `key ".": empty segment 1`,
		`a\b`:   `key "a\\b": a backslash must be followed by "." or "\" (byte 1)`,
		`a\`:    `key "a\\": a backslash must be followed by "." or "\" (byte 1)`,
		`a.\.b`: "",
	} {
		got, err := ParseKey(in)
		switch {
		case want == "" && err != nil:
			t.Errorf("ParseKey(%q): got %v, want no error", in, err)
		case want != "" && (err == nil || err.Error() != want):
			t.Errorf("ParseKey(%q): got %q, %v, want error %q", in, got, err, want)
		}
	}
}
