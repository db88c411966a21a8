package agent

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/hooks"
)

func TestAgent_webhookAnswers(t *testing.T) {
	f := newFixture(t, nil)
	sha := f.commit("1")
	f.push("deploy-production")
	zero := strings.Repeat("0", 40)
	payload := func(repo, ref, after string) []byte {
		before := zero
		if after == zero {
			before = sha
		}
		p, err := hooks.PushPayload(hooks.PushInput{Repo: repo, Ref: ref, Before: before, After: after, Pusher: "octocat"})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := payload("acme/web", "refs/heads/deploy-production", sha)
	form := []byte("payload=" + url.QueryEscape(string(good)))
	big := bytes.Repeat([]byte("x"), hooks.MaxBody+1)

	tests := []struct {
		name       string
		method     string
		path       string
		body       []byte
		headers    map[string]string
		sign       bool
		wantCode   int
		wantStatus string
		wantText   string // in reason or error
	}{
		{"push to deploy branch", "POST", "/webhook/web", good, map[string]string{"X-GitHub-Event": "push"}, true, 202, "queued", ""},
		{"form encoded", "POST", "/webhook/web", form, map[string]string{"X-GitHub-Event": "push", "Content-Type": "application/x-www-form-urlencoded"}, true, 202, "queued", ""},
		{"ping", "POST", "/webhook/web", []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`), map[string]string{"X-GitHub-Event": "ping"}, true, 200, "ignored", "ping"},
		{"other event", "POST", "/webhook/web", []byte(`{}`), map[string]string{"X-GitHub-Event": "issues"}, true, 200, "ignored", "issues"},
		{"tag", "POST", "/webhook/web", payload("acme/web", "refs/tags/v1.0.0", sha), map[string]string{"X-GitHub-Event": "push"}, true, 200, "ignored", "tag v1.0.0"},
		{"other branch", "POST", "/webhook/web", payload("acme/web", "refs/heads/main", sha), map[string]string{"X-GitHub-Event": "push"}, true, 200, "ignored", "branch main is not deployed"},
		{"other environment", "POST", "/webhook/web", payload("acme/web", "refs/heads/deploy-staging", sha), map[string]string{"X-GitHub-Event": "push"}, true, 200, "ignored", "deploy-production"},
		{"branch deleted", "POST", "/webhook/web", payload("acme/web", "refs/heads/deploy-production", zero), map[string]string{"X-GitHub-Event": "push"}, true, 200, "ignored", "deleted"},
		{"unsigned", "POST", "/webhook/web", good, map[string]string{"X-GitHub-Event": "push"}, false, 401, "error", "X-Hub-Signature-256"},
		{"bad signature", "POST", "/webhook/web", good, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + strings.Repeat("ab", 32)}, false, 401, "error", "X-Hub-Signature-256"},
		{"sha1 only", "POST", "/webhook/web", good, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=" + strings.Repeat("ab", 20)}, false, 401, "error", "allow_sha1"},
		{"missing event", "POST", "/webhook/web", good, map[string]string{"X-GitHub-Event": ""}, true, 400, "error", "X-GitHub-Event"},
		{"bad json", "POST", "/webhook/web", []byte(`{"ref":`), map[string]string{"X-GitHub-Event": "push"}, true, 400, "error", "JSON"},
		{"bad after", "POST", "/webhook/web", bytes.Replace(good, []byte(sha), []byte("not-a-sha"), 1), map[string]string{"X-GitHub-Event": "push"}, true, 400, "error", "after"},
		{"unknown app", "POST", "/webhook/nope", good, map[string]string{"X-GitHub-Event": "push"}, true, 404, "error", "nope"},
		{"wrong method", "GET", "/webhook/web", nil, nil, false, 405, "error", "POST"},
		{"too big", "POST", "/webhook/web", big, map[string]string{"X-GitHub-Event": "push"}, true, 413, "error", "25 MiB"},
		{"double slash", "POST", "//webhook/web", good, map[string]string{"X-GitHub-Event": "push"}, true, 400, "error", "not a clean path"},
		{"dot segment", "POST", "/webhook/./web", good, map[string]string{"X-GitHub-Event": "push"}, true, 400, "error", "not a clean path"},
		{"dot-dot segment", "POST", "/webhook/web/..", good, map[string]string{"X-GitHub-Event": "push"}, true, 400, "error", "not a clean path"},
		{"trailing slash", "POST", "/webhook/web/", good, map[string]string{"X-GitHub-Event": "push"}, true, 400, "error", "not a clean path"},
		{"other repository", "POST", "/webhook/web", payload("evil/web", "refs/heads/deploy-production", sha), map[string]string{"X-GitHub-Event": "push"}, true, 422, "error", "evil/web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r answerOf
			if tt.method == "POST" {
				r = f.post(tt.path, tt.body, tt.headers, tt.sign)
			} else {
				req, _ := http.NewRequest(tt.method, f.url+tt.path, nil)
				r = f.do(req)
			}
			if r.Code != tt.wantCode || r.Status != tt.wantStatus {
				t.Fatalf("got %d %q (%s%s), want %d %q", r.Code, r.Status, r.Reason, r.Error, tt.wantCode, tt.wantStatus)
			}
			if text := r.Reason + r.Error; !strings.Contains(text, tt.wantText) {
				t.Errorf("got reason %q, want it to mention %q", text, tt.wantText)
			}
			if tt.wantCode == 202 && r.Deploy == "" {
				t.Error("got no deploy id with a queued answer")
			}
		})
	}
}

func TestAgent_healthz(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Get(f.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("got %d, want 200", resp.StatusCode)
	}
}

func TestAgent_duplicateDeliveryAcrossRestart(t *testing.T) {
	f := newFixture(t, nil)
	sha := f.commit("1")
	f.push("deploy-production")
	body, _ := hooks.PushPayload(hooks.PushInput{Repo: "acme/web", Ref: "refs/heads/deploy-production", Before: strings.Repeat("0", 40), After: sha})
	headers := map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
	first := f.post("/webhook/web", body, headers, true)
	if first.Code != 202 {
		t.Fatalf("first delivery: got %d %s, want 202", first.Code, first.Error)
	}
	f.wait(first.Deploy)
	f.restart()
	again := f.post("/webhook/web", body, headers, true)
	if again.Code != 200 || again.Status != "duplicate" {
		t.Fatalf("redelivery after restart: got %d %q, want 200 duplicate", again.Code, again.Status)
	}
	hist, _ := f.agent.state.History("web", 0)
	if len(hist) != 1 {
		t.Errorf("got %d deploys, want 1", len(hist))
	}
}
