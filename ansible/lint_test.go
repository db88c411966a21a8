package ansible

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// lintSummary is ansible-lint's closing line when nothing is wrong.
var lintSummary = regexp.MustCompile(`(?m)^Passed with production profile: 0 failure\(s\), 0 warning\(s\) on \d+ files\.$`)

// TestLint runs ansible-lint with the production profile, offline, over site.yml, the role
// and the example inventory, and checks that no rule is skipped: no noqa comment and no
// skip_list, so what passes is the whole profile.
func TestLint(t *testing.T) {
	needAnsible(t)
	r := newRunner(t)
	cmd := exec.CommandContext(t.Context(), "ansible-lint", "--offline", "--profile", "production")
	cmd.Env = append(r.env(), "XDG_CACHE_HOME="+filepath.Join(r.dir, "cache"))
	out, err := cmd.CombinedOutput()
	summary := lintSummary.Find(out)
	if err != nil || summary == nil {
		t.Fatalf("ansible-lint --profile production: %v\n%s", err, out)
	}
	t.Logf("ansible-lint: %s", summary)

	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".go") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, word := range []string{"noqa", "skip_list", "warn_list"} {
			if strings.Contains(string(data), word) {
				t.Errorf("%s: %s: every ansible-lint rule of the production profile must pass, none skipped", path, word)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestInventoryExample: the example inventory is what the README shows, ansible reads it
// with site.yml, and its first host is the one with no network (the package from the
// controller).
func TestInventoryExample(t *testing.T) {
	needAnsible(t)
	example, err := os.ReadFile("inventory.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+string(example)+"```\n") {
		t.Errorf("README.md's Ansible section does not show inventory.example.yml verbatim")
	}
	r := newRunner(t)
	cmd := exec.CommandContext(t.Context(), "ansible-playbook", "-i", "inventory.example.yml", "site.yml", "--list-hosts")
	cmd.Env = r.env()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hosts (2):") ||
		!regexp.MustCompile(`(?m)^\s+web-1$`).Match(out) || !regexp.MustCompile(`(?m)^\s+web-2$`).Match(out) {
		t.Errorf("ansible-playbook --list-hosts: %v, want web-1 and web-2:\n%s", err, out)
	}
	cmd = exec.CommandContext(t.Context(), "ansible-inventory", "-i", "inventory.example.yml", "--host", "web-1")
	cmd.Env = r.env()
	out, err = cmd.Output()
	if err != nil || !strings.Contains(string(out), `"pushdeploy_package_file"`) {
		t.Errorf("ansible-inventory --host web-1: %v, want pushdeploy_package_file:\n%s", err, out)
	}
}
