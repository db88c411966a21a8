package units

import (
	"path/filepath"
	"testing"
)

// maxExposure is the highest `systemd-analyze security` exposure a default service may
// score: 2.5 and below is what systemd calls "OK".
const maxExposure = 2.5

// TestGenerate_securityScore scores the default unit, next to a unit with no hardening at
// all, with `systemd-analyze security --offline=yes <unit file>`.
func TestGenerate_securityScore(t *testing.T) {
	spec, err := Parse([]byte(`{"services": {"web": {"command": "bin/server", "port": 8080}}}`))
	if err != nil {
		t.Fatal(err)
	}
	release := newRelease(t, testSHA, "bin/server")
	tests := []struct {
		name  string
		files func() []File
		check func(score float64) bool
	}{
		{"default", func() []File { return generate(t, spec, Options{App: "shop", ReleaseDir: release}) },
			func(s float64) bool { return s <= maxExposure }},
		{"user manager", func() []File { return generate(t, spec, Options{App: "shop", ReleaseDir: release, User: true}) },
			func(s float64) bool { return s <= maxExposure }},
		{"no hardening", func() []File {
			return []File{{Name: "pushdeploy-shop-web@.service", Content: "[Service]\nExecStart=" + release + "/bin/server\n"}}
		}, func(s float64) bool { return s > 9 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeUnits(t, tt.files())
			score := securityScore(t, filepath.Join(dir, "pushdeploy-shop-web@1.service"))
			t.Logf("systemd-analyze security --offline=yes: %s unit scores %.1f", tt.name, score)
			if !tt.check(score) {
				t.Errorf("%s unit scores %.1f", tt.name, score)
			}
		})
	}
}

func generate(t *testing.T, spec *Spec, opts Options) []File {
	t.Helper()
	files, err := Generate(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	return files
}
