package renv

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Secrets are the leaves under a top-level "secret" object: put a database password at
// secret.db_password, not at db.password. They are ordinary leaves with two differences:
// exports and listings show them masked (Masked) unless asked for --show-secrets, and they
// become environment variables without the "secret" prefix (secret.db_password becomes
// DB_PASSWORD, see VarName). Dotted keys (Dotted, ParseKey) are how keys appear in messages
// and on the command line.

// secretSegment is the first segment of every secret leaf's path.
const secretSegment = "secret"

// IsSecret reports whether the leaf key is a secret: the first segment of its path is
// "secret".
func IsSecret(key string) bool {
	return key == secretSegment || strings.HasPrefix(key, secretSegment+"/")
}

// SecretValues returns the values of the secret leaves as the environment file carries
// them (envValue: a string's text, anything else its compact JSON), for the agent to mask
// wherever an app's output quotes them. A value that cannot be rendered is left out: the
// file cannot carry it either.
func (l Leaves) SecretValues() []string {
	var out []string
	for _, k := range l.Keys() {
		if !IsSecret(k) {
			continue
		}
		if v, err := envValue(l[k]); err == nil && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Hidden is what Masked puts in place of a secret's value, as a JSON string.
const Hidden = "<hidden: --show-secrets shows it>"

// ErrMasked is what CheckNotMasked's error wraps.
var ErrMasked = errors.New("masked values")

// Masked returns a copy of l with every secret leaf's value replaced by the JSON string
// Hidden, for exports and listings made without --show-secrets.
func (l Leaves) Masked() Leaves {
	m := l.Clone()
	for k := range m {
		if IsSecret(k) {
			m[k] = quote(Hidden)
		}
	}
	return m
}

// CheckNotMasked returns an error wrapping ErrMasked, naming every key (dotted) whose value
// is the JSON string Hidden, or nil when there is none. Importing an export made without
// --show-secrets would overwrite the real secrets with the mask: the importer checks the
// document first.
func (l Leaves) CheckNotMasked() error {
	var keys []string
	for _, k := range l.Keys() {
		var s string
		if kind(l[k]) == "a string" && json.Unmarshal(l[k], &s) == nil && s == Hidden {
			keys = append(keys, Dotted(k))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: the value is %q, the mask of an export made without --show-secrets; "+
		"importing it would overwrite the real secrets with the mask: export with --show-secrets, "+
		"or set these keys to their real values", ErrMasked, strings.Join(keys, ", "), Hidden)
}
