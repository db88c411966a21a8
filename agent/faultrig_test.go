package agent

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/haproxy"
	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/renv"
	"github.com/pushdeploy/pushdeploy/state"
)

// faultRig is one case of the fault matrix: an agent deploying app web, the real parts the
// case needs, and what the agent logged.
type faultRig struct {
	t    *testing.T
	f    *fixture
	logs *syncbuf.Buffer // the agent's own log, JSON lines

	front  *gitFront     // git daemon behind a front that can refuse or stall
	etcd   *testenv.Etcd // configuration store
	store  *renv.Store
	disk   *smallDisk // a small data directory
	sd     *testenv.Systemd
	hap    *testenv.HAProxy
	gh     *fakeDeployments
	ghLogs *syncbuf.Buffer
	armed  atomic.Bool // a fault waits for the rollout's second batch
	load   *load       // requests through haproxy while version 2 deploys

	services bool // releases run 2 instances of the hello server
	port     int
	hello    string
	v1       string
}

// write puts version's files in the work tree: with services the hello server and its
// service.json (2 instances, one batch each, HTTP health check), else a file and a script.
func (r *faultRig) write(version string) {
	r.f.repo.Write("VERSION", version+"\n", 0o644)
	if !r.services {
		r.f.repo.Write("bin/run", "#!/bin/sh\necho "+version+"\n", 0o755)
		return
	}
	r.f.repo.Write("bin/hello", r.hello, 0o755)
	r.f.repo.Write("service.json", fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": %d,
		"health": {"http": "/health", "timeout": "500ms", "interval": "100ms", "min_healthy_time": "300ms", "healthy_deadline": "5s"},
		"rollout": {"max_parallel": 1}}}}`, r.port), 0o644)
}

func (r *faultRig) commit(version string) string {
	r.write(version)
	return r.f.repo.Commit("version " + version)
}

// serves checks that version is what runs: every instance answers with it (services), or
// current's VERSION is it.
func (r *faultRig) serves(version string) {
	r.t.Helper()
	if !r.services {
		got, err := os.ReadFile(filepath.Join(r.f.cfg.Layout().Current("web"), "VERSION"))
		if err != nil || string(got) != version+"\n" {
			r.t.Errorf("current/VERSION: got %q (%v), want version %s", got, err, version)
		}
		return
	}
	for i := range 2 {
		if got := get(fmt.Sprintf("http://127.0.0.1:%d/", r.port+i)); got != "hello from version "+version {
			r.t.Errorf("instance %d: got %q, want version %s", i+1, got, version)
		}
	}
	if r.hap != nil {
		if got := get("http://" + r.hap.Addr + "/"); got != "hello from version "+version {
			r.t.Errorf("through haproxy: got %q, want version %s", got, version)
		}
	}
}

// consistent checks, between deploys (holding the app's operation lock, so no deploy is
// under way), that current is want, no deploy is stuck in a middle step, nothing half
// written is left, and every release but current is marked.
func (r *faultRig) consistent(want string) {
	r.t.Helper()
	ap := r.f.agent.apps["web"]
	ap.op.Lock()
	defer ap.op.Unlock()
	if got := r.f.current(); got != want {
		r.t.Errorf("current: got %.12s, want %.12s", got, want)
	}
	if left := leftovers(r.t, r.f.cfg.DataDir); len(left) > 0 {
		r.t.Errorf("half-written files left: %v", left)
	}
	hist, err := r.f.agent.state.History("web", 0)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, d := range hist {
		if !d.Status.Final() && d.Status != state.StatusQueued {
			r.t.Errorf("deploy %s (%s): recorded %s with no deploy under way", d.ID, d.Kind, d.Status)
		}
	}
	rels, err := r.f.agent.store.List("web")
	if err != nil {
		r.t.Fatal(err)
	}
	for _, rel := range rels {
		if rel.SHA != want && rel.Mark != release.Bad && rel.Mark != release.Good {
			r.t.Errorf("release %.12s: unmarked beside current", rel.SHA)
		}
	}
}

// catchUp waits for the agent to deploy sha by itself (catch-up, no push) and returns
// that deploy.
func (r *faultRig) catchUp(sha string) *state.Deploy {
	r.t.Helper()
	if !waitFor(r.t.Context(), 60*time.Second, func() bool { c, _ := r.f.agent.store.Current("web"); return c == sha }) {
		r.t.Fatalf("the agent did not deploy %.12s by itself", sha)
	}
	hist, _ := r.f.agent.state.History("web", 1)
	return r.f.wait(hist[0].ID)
}

// logged counts the lines of the agent's log with message msg.
func (r *faultRig) logged(buf *syncbuf.Buffer, msg string) int {
	return strings.Count(buf.String(), `"message":"`+msg+`"`)
}

func randomBytes(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return string(b)
}

// recoverByCatchUp: the agent deploys version 2 by itself at its next catch-up.
func recoverByCatchUp(r *faultRig, v2 string) {
	d := r.catchUp(v2)
	if d.Status != state.StatusSucceeded || d.Kind != state.KindReconcile {
		r.t.Errorf("catch-up: got %s %s (%s), want a succeeded reconcile", d.Kind, d.Status, d.Error)
	}
	r.serves("2")
}

// recoverByPush: the next push (version 3) succeeds.
func recoverByPush(r *faultRig, _ string) {
	d := r.f.pushAndDeploy(r.commit("3"))
	if d.Status != state.StatusSucceeded {
		r.t.Fatalf("version 3 after the fault: got %s (%s), want succeeded", d.Status, d.Error)
	}
	r.serves("3")
}

// gitFronted serves the fixture's bare repository with git daemon behind a front, and
// bounds each exchange with it by 2s; catch-up runs every second.
func gitFronted(r *faultRig, c *config.Config) {
	bare := strings.TrimPrefix(c.Apps["web"].Remote, "file://")
	base := testenv.GitDaemon(r.t, filepath.Dir(filepath.Dir(bare)))
	r.front = newGitFront(r.t, strings.TrimSuffix(strings.TrimPrefix(base, "git://"), "/"))
	c.Apps["web"].Remote = "git://" + r.front.addr + "/acme/web.git"
	c.Apps["web"].FetchTimeout = 5 * time.Second
	c.ReconcileInterval = time.Second
}

// onSmallDisk puts the data directory on a 24 MiB tmpfs; catch-up runs every second.
func onSmallDisk(r *faultRig, c *config.Config) {
	r.disk = newSmallDisk(r.t, 24)
	c.DataDir = filepath.Join(r.disk.Dir, "data")
	// A unix socket's path holds at most 107 bytes: not under /proc/<pid>/root/<test dir>.
	run, err := os.MkdirTemp("", "pd-run-")
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { os.RemoveAll(run) })
	c.AdminSocket = filepath.Join(run, "admin.sock")
	c.ReconcileInterval = time.Second
}

// bigV2 is version 2 with a 7 MiB file that does not compress.
func bigV2(r *faultRig) string {
	r.write("2")
	r.f.repo.Write("big.bin", randomBytes(7<<20), 0o644)
	return r.f.repo.Commit("version 2, with a big file")
}

func behindHAProxy(r *faultRig, c *config.Config) {
	r.hap = testenv.StartHAProxy(r.t, "be_web", []testenv.HAServer{{Name: "web1", Port: r.port}, {Name: "web2", Port: r.port + 1}})
	c.Apps["web"].HAProxy = &config.HAProxy{Socket: r.hap.Socket, Backend: "be_web", Server: "web{instance}", DrainTimeout: 2 * time.Second}
}

func (r *faultRig) socketGone() { r.rename(r.hap.Socket, r.hap.Socket+".gone") }
func (r *faultRig) socketBack() { r.rename(r.hap.Socket+".gone", r.hap.Socket) }
func (r *faultRig) rename(a, b string) {
	if err := os.Rename(a, b); err != nil {
		r.t.Error(err)
	}
}

// allUp checks that haproxy has both servers ready and up.
func (r *faultRig) allUp(when string) {
	r.t.Helper()
	ha := &haproxy.Client{Socket: r.hap.Socket}
	for _, s := range []string{"web1", "web2"} {
		if !waitFor(r.t.Context(), 10*time.Second, func() bool {
			admin, oper, err := ha.State(r.t.Context(), "be_web", s)
			return err == nil && admin == haproxy.StateReady && oper == "up"
		}) {
			admin, oper, err := ha.State(r.t.Context(), "be_web", s)
			r.t.Errorf("%s: server %s: got %s/%s (%v), want ready/up", when, s, admin, oper, err)
		}
	}
}
