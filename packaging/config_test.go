package packaging

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/config"
)

// The example config, as shipped, is refused for want of an app (and only for that);
// with its commented app uncommented and its files in place, it is valid.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := config.Env{Hostname: "web-1"}
	_, err = config.Parse(data, env)
	if want := "apps: missing: configure at least one app"; err == nil || err.Error() != want {
		t.Errorf("as shipped: got error %v, want %q", err, want)
	}

	dir := t.TempDir()
	for _, f := range []string{"web.secret", "web.deploy_key", "known_hosts"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Uncomment the lines after "apps:" ("#  web:" → "  web:") and point the files at dir.
	head, example, ok := strings.Cut(string(data), "\napps:\n")
	if !ok {
		t.Fatal(`no "apps:" line in agent.yaml`)
	}
	example = regexp.MustCompile(`(?m)^#`).ReplaceAllString(example, "")
	text := strings.ReplaceAll(head+"\napps:\n"+example, "/etc/pushdeploy/", dir+"/")
	cfg, err := config.Parse([]byte(text), env)
	if err != nil {
		t.Fatalf("uncommented: %v\n%s", err, text)
	}
	if _, ok := cfg.Apps["web"]; !ok || cfg.Systemd.Scope != "system" || cfg.DataDir != config.DefaultDataDir {
		t.Errorf("uncommented: got apps %v, scope %q, data_dir %q; want web, system, %s",
			cfg.Apps, cfg.Systemd.Scope, cfg.DataDir, config.DefaultDataDir)
	}
}
