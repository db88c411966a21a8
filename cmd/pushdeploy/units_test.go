package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	return out.String(), err
}

// render prints exactly the units the units package generates: its golden files are the
// expected output.
func TestUnitsRender(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name   string
		args   []string
		golden string
	}{
		{"system", []string{"units", "render", "../../units/testdata/multi", "--app", "shop", "--release", "/srv/pushdeploy/apps/shop/releases/" + sha}, "multi/units.golden"},
		{"user", []string{"units", "render", "../../units/testdata/multi", "--app", "shop", "--release", "/srv/pushdeploy/apps/shop/releases/" + sha, "--user"}, "multi/units-user.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCLI(t, tt.args...)
			if err != nil {
				t.Fatalf("render: %v\n%s", err, out)
			}
			want, err := os.ReadFile(filepath.Join("../../units/testdata", tt.golden))
			if err != nil {
				t.Fatal(err)
			}
			if out != string(want) {
				t.Errorf("render printed\n%s\nwant units/testdata/%s:\n%s", out, tt.golden, want)
			}
		})
	}
}

func TestUnitsRender_defaultsAndErrors(t *testing.T) {
	out, err := runCLI(t, "units", "render", "../../units/testdata/ndm", "--release", "/srv/npm")
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	for _, want := range []string{
		"# ndm service docs has no scripts.start: no unit, as ndm made none\n",
		"# pushdeploy-ndm-baby-animals@.service\n", // the app is named after DIR
		"WorkingDirectory=/srv/npm\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render output has no %q:\n%s", want, out)
		}
	}

	dir := t.TempDir()
	if _, err := runCLI(t, "units", "render", dir); err == nil || !strings.Contains(err.Error(), "no service.json") {
		t.Errorf("render of a directory without service.json: got %v", err)
	}
	os.WriteFile(filepath.Join(dir, "service.json"), []byte(`{"services": {"web": {"command": "bin/x"}}}`), 0o644)
	if _, err := runCLI(t, "units", "render", dir); err == nil || !strings.Contains(err.Error(), "PrivateTmp= hides") {
		t.Errorf("render of a release under /tmp: got %v", err)
	}
	if out, err := runCLI(t, "units", "render", dir, "--release", "/srv/web", "--app", "web"); err != nil ||
		!strings.Contains(out, "ExecStart=/srv/web/bin/x\n") {
		t.Errorf("render with --release: %v\n%s", err, out)
	}
}
