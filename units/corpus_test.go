package units

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// corpusDir holds real ndm service.json files others wrote (../shared/corpus, beside the
// checkout): read in place, never copied into the repository.
const corpusDir = "../../shared/corpus/ndm/cases"

// TestLoad_ndmCorpus loads every real ndm service.json (with the package.json beside it) as
// a release would hold it, and renders its units: each runs, or is refused with an error
// naming the field, as listed.
func TestLoad_ndmCorpus(t *testing.T) {
	refused := map[string]string{
		"fixture-invalid": "service.json:",               // not JSON at all
		"fixture-empty":   "services: no service to run", // {}
	}
	cases, err := os.ReadDir(corpusDir)
	if err != nil {
		testenv.Unavailable(t, "corpus", "%v (../shared/corpus beside the checkout)", err)
	}
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			dir := t.TempDir() // a release: service.json and package.json at its root
			for _, f := range []string{"service.json", "package.json"} {
				if b, err := os.ReadFile(filepath.Join(corpusDir, c.Name(), f)); err == nil {
					if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			spec, err := Load(dir)
			if want, ok := refused[c.Name()]; ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %v, want an error containing %q", err, want)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			files, err := Generate(spec, Options{App: "corpus", SHA: strings.Repeat("a", 40), ReleaseDir: "/var/lib/pushdeploy/apps/corpus/releases/" + strings.Repeat("a", 40)})
			if err != nil {
				t.Fatalf("generate: %v", err)
			}
			t.Logf("%d services, %d unit files, skipped %v", len(spec.Services), len(files), spec.Skipped)
		})
	}
}
