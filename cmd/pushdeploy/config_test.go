package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// config check says ok with the apps, or every wrong field as an error that main maps
// to exit status 78, as it does for a missing file.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "environments: [production]\napps:\n  web:\n    repo: acme/web\n    remote: https://git.example/acme/web.git\n    secret_file: "+secret+"\n  api:\n    repo: acme/api\n    remote: https://git.example/acme/api.git\n    secret_file: "+secret+"\n")
	bad := write("bad.yaml", "environments: [production]\napps:\n  web:\n    repo: acme/web\n")
	tests := []struct {
		name, config, want string
		configErr          bool
	}{
		{"valid", good, good + ": ok, apps: api, web\n", false},
		{"invalid", bad, "apps.web.remote: missing", true},
		{"missing", filepath.Join(dir, "none.yaml"), "no such file or directory", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCLI(t, "config", "check", "--config", tt.config)
			if !tt.configErr {
				if err != nil || out != tt.want {
					t.Errorf("got %q, %v; want %q", out, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one saying %q", err, tt.want)
			}
			if !errors.As(err, new(configError)) {
				t.Errorf("error %v is no configError: main would exit 1, not %d", err, exitConfig)
			}
		})
	}
}
