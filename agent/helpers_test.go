package agent

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

const testSecret = "s3cret-for-tests"

// fixture is a running agent deploying app "web" from a bare repo served over file://.
type fixture struct {
	t      testing.TB
	cfg    *config.Config
	agent  *Agent
	repo   *testenv.Repo
	bare   *testenv.Bare
	url    string
	cancel context.CancelFunc
	done   chan error
	tune   func(*Agent) // adjusts each new agent before it opens
}

// newFixture writes a config (adjusted by edit), opens and runs an agent.
func newFixture(t testing.TB, edit func(*config.Config)) *fixture {
	t.Helper()
	return newTunedFixture(t, edit, nil)
}

// newTunedFixture is newFixture with tune applied to the agent before it opens.
func newTunedFixture(t testing.TB, edit func(*config.Config), tune func(*Agent)) *fixture {
	t.Helper()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := testenv.NewRoot(t)
	bare := testenv.NewBare(t, root, "acme/web.git", true)
	cfg := &config.Config{
		Listen:       "127.0.0.1:0",
		DataDir:      filepath.Join(dir, "data"),
		Environments: []string{"production"},
		Apps: map[string]*config.App{"web": {
			Repo:       "acme/web",
			Remote:     testenv.FileURL(bare.Path()),
			SecretFile: secretFile,
		}},
	}
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Complete(config.Env{Hostname: "test-host"}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, cfg: cfg, repo: testenv.NewRepo(t), bare: bare, tune: tune}
	f.start()
	t.Cleanup(f.stop)
	return f
}

func (f *fixture) start() {
	f.t.Helper()
	f.agent = New(f.cfg, zerolog.NewTestWriter(f.t), zerolog.DebugLevel)
	f.agent.ShutdownGrace = 5 * time.Second
	if f.tune != nil {
		f.tune(f.agent)
	}
	if err := f.agent.Open(); err != nil {
		f.t.Fatal(err)
	}
	f.url = "http://" + f.agent.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.agent.Run(ctx) }()
}

// stop stops the agent as SIGTERM would and waits for it.
func (f *fixture) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	if err := <-f.done; err != nil {
		f.t.Errorf("agent run: %v", err)
	}
	f.cancel = nil
}

func (f *fixture) restart() {
	f.t.Helper()
	f.stop()
	f.start()
}

// commit writes a file and commits it, returning the sha.
func (f *fixture) commit(version string) string {
	f.repo.Write("VERSION", version+"\n", 0o644)
	f.repo.Write("bin/run", "#!/bin/sh\necho "+version+"\n", 0o755)
	return f.repo.Commit("version " + version)
}

func (f *fixture) push(branch string) { f.repo.Push(f.bare, "main:"+branch) }

// pushAndDeploy pushes main to deploy-production, delivers the signed webhook for sha and
// waits for the deploy to finish.
func (f *fixture) pushAndDeploy(sha string) *state.Deploy {
	f.t.Helper()
	f.push("deploy-production")
	r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), sha)
	if r.Code != 202 {
		f.t.Fatalf("deliver %.12s: got %d %s", sha, r.Code, r.Error)
	}
	return f.wait(r.Deploy)
}

type answerOf struct {
	Code   int
	Status string `json:"status"`
	Reason string `json:"reason"`
	Deploy string `json:"deploy"`
	Error  string `json:"error"`
}

// deliver POSTs a signed push payload for sha on ref, the way GitHub does.
func (f *fixture) deliver(ref, before, after string) answerOf {
	f.t.Helper()
	payload, err := hooks.PushPayload(hooks.PushInput{Repo: "acme/web", Ref: ref, Before: before, After: after, Pusher: "octocat"})
	if err != nil {
		f.t.Fatal(err)
	}
	return f.post("/webhook/web", payload, map[string]string{"X-GitHub-Event": "push"}, true)
}

// post sends body with GitHub's headers (a fresh delivery id unless given) and, when sign is
// set, an HMAC-SHA256 signature computed here independently of package hooks.
func (f *fixture) post(path string, body []byte, headers map[string]string, sign bool) answerOf {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Delivery", newDeliveryID())
	if sign {
		req.Header.Set("X-Hub-Signature-256", mac256([]byte(testSecret), body))
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return f.do(req)
}

func (f *fixture) do(req *http.Request) answerOf {
	f.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var r answerOf
	if err := json.Unmarshal(data, &r); err != nil {
		f.t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, data)
	}
	r.Code = resp.StatusCode
	return r
}

// mac256 is the X-Hub-Signature-256 of body, computed with crypto/hmac rather than by
// package hooks, so that a bug there cannot hide the same bug in its verification.
func mac256(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func newDeliveryID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// wait polls until deploy id of app "web" reaches a final status.
func (f *fixture) wait(id string) *state.Deploy {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		d, err := f.agent.state.Get("web", id)
		if err == nil && d.Status.Final() {
			return d
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("deploy %s did not finish in time", id)
	return nil
}

func (f *fixture) current() string {
	f.t.Helper()
	sha, err := f.agent.store.Current("web")
	if err != nil {
		f.t.Fatal(err)
	}
	return sha
}

// writeScript writes an executable deploy script and returns its path.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "deploy.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
