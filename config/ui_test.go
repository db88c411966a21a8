package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minimalDoc is a valid configuration with one app, "web", whose settings end the document,
// and the secret file it names.
func minimalDoc(t *testing.T) (doc, secret string) {
	t.Helper()
	dir := t.TempDir()
	secret = filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("top-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "data_dir: " + dir + "\nenvironments: [production]\napps:\n  web:\n    repo: acme/web\n    remote: https://x/y.git\n    secret_file: " + secret + "\n", secret
}

// TestParse_fieldPaths checks that a YAML decoding error names the field's path, as
// validation errors do, and not only a line and a Go type.
func TestParse_fieldPaths(t *testing.T) {
	base, _ := minimalDoc(t)
	tests := []struct {
		name, doc, want string
	}{
		{"int", base + "    keep_releases: five\n", `apps.web.keep_releases: want a whole number, got "five" (line 8)`},
		{"duration", base + "    script_timeout: 10 minutes\n", `apps.web.script_timeout: want a duration such as 30s or 1m30s, got "10 minutes"`},
		{"unknown field", base + "    keep_release: 3\n", "apps.web.keep_release: unknown field (known: repo, remote,"},
		{"flow mapping", base + "    haproxy: {socket: /a.sock, backend: web, drain_timeout: soon}\n", `apps.web.haproxy.drain_timeout: want a duration`},
		{"list item", "history_limit: [1]\n" + base, "history_limit: want a whole number, got a list"},
		{"script", base + "    script: {a: b}\n", "apps.web.script: want a path or a list of strings (line 8)"},
		{"ui", base + "ui:\n  listen: 127.0.0.1:1\n  token: x\n", "ui.token: unknown field (known: listen, token_file)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), Env{Hostname: "h"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParse_uiAndNotify(t *testing.T) {
	base, secret := minimalDoc(t)
	dir := filepath.Dir(secret)
	tests := []struct {
		name, doc, want string
	}{
		{"ui defaults", base + "ui: {}\n", ""},
		{"ui wide without token", base + "ui: {listen: \"0.0.0.0:5758\"}\n", "ui.listen: \"0.0.0.0:5758\" is reachable from other hosts"},
		{"ui wide with token", base + "ui: {listen: \":5758\", token_file: " + secret + "}\n", ""},
		{"ui bad listen", base + "ui: {listen: \"5758\"}\n", "ui.listen: want host:port"},
		{"ui missing token file", base + "ui: {token_file: " + dir + "/nope}\n", "ui.token_file:"},
		{"notify", base + "    notify: [{url: \"https://hooks.example.com/x\", type: slack, events: [failed, reverted]}]\nnotify:\n  - {url: \"http://127.0.0.1:9/x\", secret_file: " + secret + "}\n", ""},
		{"notify bad event", base + "    notify: [{url: \"https://h.example.com/x\", events: [exploded]}]\n", "apps.web.notify[0].events[0]: want one of started, succeeded"},
		{"notify bad type", base + "notify: [{url: \"https://h.example.com/x\", type: teams}]\n", "notify[0].type: want slack or webhook"},
		{"notify no url", base + "notify: [{type: slack}]\n", "notify[0].url: missing"},
		{"notify url hidden", base + "notify: [{url: \"hooks.slack.com/services/T0/B0/SECRET\"}]\n", "notify[0].url: want an http(s) URL, got \"<not a URL>\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.doc), Env{Hostname: "h"})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				if cfg.UI != nil && cfg.UI.Listen == "" {
					t.Errorf("ui.listen: got empty, want a default")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error shows the URL's secret path: %v", err)
			}
		})
	}
}
