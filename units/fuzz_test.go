package units

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: any service.json (native or ndm) is parsed or refused with an error; a parsed
// one always generates its units (validation catches whatever systemd could not express,
// so Generate has nothing left to refuse), every file is a pushdeploy unit or drop-in, and
// no generated line breaks out of its directive (a newline only ends a directive).
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"services": {"web": {"command": "bin/web --port $PORT", "instances": 2, "port": 3000,
		"health": {"http": "/healthz"}, "rollout": {"max_parallel": "50%", "canary": 1}}}}`))
	f.Add([]byte(`{"env": {"A": "1"}, "services": {"w": {"command": ["x", "%i"], "user": "www-data", "state_dirs": ["cache"]}}}`))
	if cases, err := os.ReadDir(corpusDir); err == nil {
		for _, c := range cases {
			if b, err := os.ReadFile(filepath.Join(corpusDir, c.Name(), "service.json")); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		files, err := Generate(spec, Options{App: "fuzz", SHA: strings.Repeat("b", 40),
			ReleaseDir: "/var/lib/pushdeploy/apps/fuzz/releases/" + strings.Repeat("b", 40)})
		if err != nil {
			t.Fatalf("parsed, but Generate refused: %v", err)
		}
		for _, file := range files {
			if !strings.HasPrefix(file.Name, "pushdeploy-fuzz") {
				t.Fatalf("file %q is not the app's", file.Name)
			}
			for line := range strings.SplitSeq(file.Content, "\n") {
				if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
					continue
				}
				if !strings.Contains(line, "=") {
					t.Fatalf("%s: line %q is neither a directive, a section nor a comment", file.Name, line)
				}
			}
		}
	})
}
