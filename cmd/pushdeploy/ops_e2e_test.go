package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
)

// TestE2E_logsDeployComplete drives the real CLI against a real agent: a manual deploy
// that waits for its outcome, a log followed to its end, shell completion, --json output
// and argument count errors.
func TestE2E_logsDeployComplete(t *testing.T) {
	e := newE2E(t)
	e.repo.Write("VERSION", "1\n", 0o644)
	v1 := e.repo.Commit("one")
	e.repo.Git("push", e.bare.Path(), "main:deploy-production")
	if d := e.waitFor(v1); d.Status != "succeeded" {
		t.Fatalf("first push: got %s (%s)", d.Status, d.Error)
	}
	if got := e.cli("logs", "web"); !strings.Contains(got, "deploy succeeded") || !strings.Contains(got, "fetched") {
		t.Errorf("logs web:\n%s", got)
	}

	// The branch moves without a webhook: `deploy` deploys its tip and waits for it.
	hook := filepath.Join(e.bare.Path(), "hooks", "post-receive")
	os.Rename(hook, hook+".off")
	e.repo.Write("VERSION", "2\n", 0o644)
	v2 := e.repo.Commit("two")
	e.repo.Git("push", e.bare.Path(), "main:deploy-production")
	got := e.cli("deploy", "web", "--wait")
	for _, want := range []string{"web deploy of " + v2[:12] + " (deploy-production) queued", "fetching", "running-script", "web deploy succeeded in"} {
		if !strings.Contains(got, want) {
			t.Errorf("deploy --wait lacks %q:\n%s", want, got)
		}
	}
	if got := e.cliFails("deploy", "web", "--sha", "0000000"); !strings.Contains(got, "is at "+v2[:12]+", not 0000000") {
		t.Errorf("deploy --sha of a commit that is not the tip:\n%s", got)
	}

	// logs -f follows a running deploy to its end and exits with its outcome.
	closed := filepath.Join(e.dir, "gate-closed")
	os.WriteFile(closed, nil, 0o644)
	e.repo.Write("VERSION", "3\n", 0o644)
	v3 := e.repo.Commit("three")
	e.repo.Git("push", e.bare.Path(), "main:deploy-production")
	e.cli("deploy", "web")
	e.waitStatus(v3, "running-script")
	var out syncbuf.Buffer
	follow := exec.Command(e.bin, "logs", "web", "-f", "--config", e.config)
	follow.Stdout, follow.Stderr = &out, &out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	os.Remove(closed)
	if err := follow.Wait(); err != nil {
		t.Errorf("logs -f of a deploy that succeeds: %v\n%s", err, out.String())
	}
	if got := out.String(); !strings.Contains(got, "script succeeded") || !strings.Contains(got, "web deploy succeeded") {
		t.Errorf("logs -f:\n%s", got)
	}

	// Completion of app names and deploy ids, from the config and the agent.
	complete := func(args ...string) string {
		// The word being completed comes last, after --config.
		out, err := exec.Command(e.bin, append([]string{"__complete", args[0], "--config", e.config}, args[1:]...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("complete %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if got := complete("logs", "w"); !strings.HasPrefix(got, "web\n") {
		t.Errorf("complete app: %q", got)
	}
	var hist []deployJSON
	json.Unmarshal([]byte(e.cli("history", "web", "--json")), &hist)
	if got := complete("history", "web", ""); len(hist) == 0 || !strings.HasPrefix(got, hist[0].ID+"\tdeploy succeeded") {
		t.Errorf("complete deploy id: %q, newest %+v", got, hist)
	}

	// --json and argument counts.
	var check struct {
		SHA     string
		Matches bool
	}
	if err := json.Unmarshal([]byte(e.cli("releases", "check", "web", "--json")), &check); err != nil || !check.Matches || check.SHA != v3 {
		t.Errorf("releases check --json: got %+v, %v", check, err)
	}
	var gc struct{ Removed []string }
	if err := json.Unmarshal([]byte(e.cli("releases", "gc", "web", "--json")), &gc); err != nil {
		t.Errorf("releases gc --json: %v", err)
	}
	if got := e.cliFails("logs"); !strings.Contains(got, "logs takes APP [DEPLOY_ID]; got no arguments") {
		t.Errorf("logs without an app: %s", got)
	}
}
