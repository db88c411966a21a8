package agent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/notify"
	"github.com/pushdeploy/pushdeploy/state"
)

// hookTarget records the notifications it receives, checking their signatures.
type hookTarget struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	events []notify.Event
}

func (h *hookTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if got, want := r.Header.Get(notify.SignatureHeader), notify.Sign(h.secret, body); got != want {
		h.t.Errorf("signature: got %q, want %q", got, want)
	}
	var ev notify.Event
	json.Unmarshal(body, &ev)
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.mu.Unlock()
}

// wait returns the events once there are n.
func (h *hookTarget) wait(n int) []notify.Event {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		got := append([]notify.Event(nil), h.events...)
		h.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("fewer than %d notifications arrived", n)
	return nil
}

// TestAgent_manualDeploy deploys the tip of the branch without a webhook, as `pushdeploy
// deploy` does, follows its log through the admin API, and checks the notifications and
// metrics a deploy and a failed one leave.
func TestAgent_manualDeploy(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "hook.secret")
	os.WriteFile(secret, []byte("hook-secret\n"), 0o600)
	target := &hookTarget{t: t, secret: []byte("hook-secret")}
	srv := httptest.NewServer(target)
	defer srv.Close()
	fail := filepath.Join(dir, "fail")
	f := newFixture(t, func(c *config.Config) {
		c.Apps["web"].Script = config.Argv{writeScript(t, "echo deploying; [ ! -e "+fail+" ]")}
		c.Notify = []*config.Notify{{URL: srv.URL + "/hook", SecretFile: secret, Events: []string{"started", "succeeded", "failed"}}}
	})
	ctx := t.Context()
	v1 := f.commit("1")
	f.push("deploy-production")
	backend := adminBackend{Local: f.agent.local(), a: f.agent}
	if _, err := backend.DeployBranch(ctx, "web", admin.DeployRequest{SHA: "0000000"}); !errors.Is(err, admin.ErrInvalid) {
		t.Errorf("a sha that is not the tip: got %v, want ErrInvalid", err)
	}
	if _, err := backend.DeployBranch(ctx, "web", admin.DeployRequest{Env: "staging"}); !errors.Is(err, admin.ErrInvalid) {
		t.Errorf("another environment: got %v, want ErrInvalid", err)
	}
	d, err := backend.DeployBranch(ctx, "web", admin.DeployRequest{SHA: v1[:8], User: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if d.SHA != v1 || d.Kind != state.KindDeploy || d.Trigger != state.TriggerManual || d.Pusher != "ops" || d.Branch != "deploy-production" {
		t.Errorf("queued record: got %+v", d)
	}
	var lines []string
	final, err := backend.Follow(ctx, "web", d.ID, 0, func(line []byte, _ int64) error {
		lines = append(lines, string(line))
		return nil
	})
	if err != nil || final.Status != state.StatusSucceeded {
		t.Fatalf("follow: got %+v, %v", final, err)
	}
	if got := strings.Join(lines, "\n"); !strings.Contains(got, `"line":"deploying"`) || !strings.Contains(got, `"message":"deploy succeeded"`) {
		t.Errorf("followed log lacks the script's line or the end:\n%s", got)
	}

	os.WriteFile(fail, nil, 0o644)
	v2 := f.commit("2")
	f.push("deploy-production")
	d2, err := backend.DeployBranch(ctx, "web", admin.DeployRequest{User: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.wait(d2.ID); got.Status != state.StatusFailed || got.SHA != v2 {
		t.Fatalf("second deploy: got %s of %.12s, want failed of %.12s", got.Status, got.SHA, v2)
	}
	evs := target.wait(4)
	want := []struct{ event, sha string }{{"started", v1}, {"succeeded", v1}, {"started", v2}, {"failed", v2}}
	for i, w := range want {
		if evs[i].Event != w.event || evs[i].SHA != w.sha || evs[i].App != "web" || evs[i].Host != "test-host" {
			t.Errorf("notification %d: got %+v, want %s of %.12s", i, evs[i], w.event, w.sha)
		}
	}
	if !strings.Contains(evs[3].Error, "script") {
		t.Errorf("failed notification: error %q does not say why", evs[3].Error)
	}

	resp, err := http.Get(f.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{`pushdeploy_release_info{app="web",sha="` + v1 + `"} 1`, `pushdeploy_queue_depth{app="web"} 0`,
		`pushdeploy_last_success_timestamp_seconds{app="web"} `} {
		if !strings.Contains(string(body), w) {
			t.Errorf("metrics lack %q", w)
		}
	}
}

// TestWatcher_outcomes checks that what a deploy's log says of its rollout decides the
// event of its end.
func TestWatcher_outcomes(t *testing.T) {
	tests := []struct {
		kind   string
		status state.Status
		lines  []string
		want   string
	}{
		{state.KindDeploy, state.StatusSucceeded, nil, "succeeded"},
		{state.KindDeploy, state.StatusFailed, nil, "failed"},
		{state.KindDeploy, state.StatusStale, nil, ""},
		{state.KindDeploy, state.StatusFailed, []string{`{"level":"warn","message":"deploy failed, putting previous units back"}`}, "reverted"},
		{state.KindRollback, state.StatusFailed, []string{`{"level":"warn","message":"deploy failed, rollout halted without revert"}`}, "halted"},
		{state.KindConfig, state.StatusFailed, []string{`{"level":"warn","message":"configuration unhealthy: putting the previous one back"}`}, "config_reverted"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			out, health := newOutcomes(), newVerdicts()
			w := &watcher{w: io.Discard, d: "d1", health: health, out: out}
			for _, l := range append(tt.lines, `{"level":"info","unit":"pushdeploy-web-web@1.service","release":"abc","verdict":"healthy","checks":3,"took_ms":310,"time":"2025-03-01T12:00:00.100Z","message":"instance healthy"}`) {
				w.Write([]byte(l + "\n"))
			}
			d := &state.Deploy{ID: "d1", Kind: tt.kind, Status: tt.status}
			if got := endEvent(d, out.take("d1")); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if v := health.get("pushdeploy-web-web@1.service"); v == nil || v.Verdict != "healthy" || v.Checks != 3 || v.Took != 310*time.Millisecond {
				t.Errorf("health answer: got %+v", v)
			}
		})
	}
}
