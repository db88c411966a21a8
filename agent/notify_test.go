package agent

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/state"
)

// notes is a fake sd_notify socket: it records every message; onReady, when set, runs on
// READY=1, before it is recorded.
type notes struct {
	onReady func()

	mu   sync.Mutex
	msgs []string
}

func (n *notes) Notify(msg string) error {
	if strings.HasPrefix(msg, "READY=1") && n.onReady != nil {
		n.onReady()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.msgs = append(n.msgs, msg)
	return nil
}

func (n *notes) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.msgs)
}

func (n *notes) pings() int {
	c := 0
	for _, m := range n.all() {
		if m == "WATCHDOG=1" {
			c++
		}
	}
	return c
}

// await polls until cond holds, failing the test after 20 s with the messages so far.
func (n *notes) await(t *testing.T, what string, cond func(msgs []string) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond(n.all()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; messages: %q", what, n.all())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (n *notes) awaitMsg(t *testing.T, msg string) {
	t.Helper()
	n.await(t, msg, func(msgs []string) bool { return slices.Contains(msgs, msg) })
}

// notified returns a fixture whose agent tells n, with a watchdog of wd (zero: none).
func notified(t *testing.T, n *notes, wd time.Duration, edit func(*config.Config), tune func(*Agent)) *fixture {
	return newTunedFixture(t, edit, func(a *Agent) {
		a.Notifier, a.Watchdog = n, wd
		if tune != nil {
			tune(a)
		}
	})
}

// TestAgent_notify: READY=1 once the agent answers, STATUS= as a deploy goes, STOPPING=1.
func TestAgent_notify(t *testing.T) {
	n := &notes{}
	// The agent, as tune sees it before it opens: READY=1 may come before notified returns
	// the fixture, so onReady must not wait for it.
	var ag *Agent
	var readyErr error
	n.onReady = func() {
		// When systemd hears READY=1, webhooks are answered and the state is open.
		resp, err := http.Get("http://" + ag.Addr() + "/healthz")
		if err == nil {
			resp.Body.Close()
			_, err = ag.state.History("web", 1)
		}
		readyErr = err
	}
	g := newGate(t)
	script := writeScript(t, g.script())
	f := notified(t, n, 0, func(c *config.Config) { c.Apps["web"].Script = config.Argv{script} }, func(a *Agent) { ag = a })
	n.await(t, "READY", func(msgs []string) bool { return len(msgs) > 0 })
	if got, want := n.all()[0], "READY=1\nSTATUS=idle; 1 app"; got != want {
		t.Errorf("first message: got %q, want %q", got, want)
	}
	if readyErr != nil {
		t.Errorf("READY=1 before the agent answers: %v", readyErr)
	}

	sha := f.commit("1")
	f.push("deploy-production")
	r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), sha)
	n.awaitMsg(t, "STATUS=deploying web "+sha[:12]+": running script")
	g.open(t)
	if d := f.wait(r.Deploy); d.Status != state.StatusSucceeded {
		t.Fatalf("deploy: got %s (%s), want succeeded", d.Status, d.Error)
	}
	n.await(t, "idle again", func(msgs []string) bool { return msgs[len(msgs)-1] == "STATUS=idle; 1 app" })

	f.stop()
	msgs := n.all()
	if got, want := msgs[len(msgs)-1], "STOPPING=1\nSTATUS=stopping"; got != want {
		t.Errorf("last message: got %q, want %q", got, want)
	}
	if got := n.pings(); got != 0 {
		t.Errorf("without a watchdog: %d pings, want none", got)
	}
}

// TestAgent_watchdog: the pings stop while a part of the agent is wedged, and come back
// once it is not.
func TestAgent_watchdog(t *testing.T) {
	const wd = 200 * time.Millisecond // a round every 100 ms
	tests := []struct {
		name string
		// wedge wedges f's agent and returns what unwedges it (nil: nothing can).
		wedge func(t *testing.T, f *fixture) func()
	}{
		{"state store closed", func(t *testing.T, f *fixture) func() {
			f.agent.state.Close()
			return nil
		}},
		{"queue lock held", func(t *testing.T, f *fixture) func() {
			ap := f.agent.apps["web"]
			ap.mu.Lock()
			return ap.mu.Unlock
		}},
		{"worker stuck in a fetch", func(t *testing.T, f *fixture) func() {
			// A git server that accepts and never answers, as a wedged network would.
			srv := hangingServer(t)
			f.stop()
			f.cfg.Apps["web"].Remote = "git://" + srv.addr() + "/acme/web.git"
			f.start()
			r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), strings.Repeat("a", 40))
			if r.Code != 202 {
				t.Fatalf("deliver: got %d %s", r.Code, r.Error)
			}
			srv.awaitConn(t)
			return srv.close
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &notes{}
			f := notified(t, n, wd, nil, func(a *Agent) { a.StageLimit = 300 * time.Millisecond })
			n.await(t, "pings", func([]string) bool { return n.pings() >= 2 })
			unwedge := tt.wedge(t, f)
			if unwedge != nil {
				unwedge = sync.OnceFunc(unwedge)
				t.Cleanup(unwedge) // before the fixture stops the agent
			}
			time.Sleep(f.agent.StageLimit + wd) // the limit passes; a round under way ends
			pings := n.pings()
			time.Sleep(4 * wd)
			if got := n.pings(); got != pings {
				t.Fatalf("while wedged: %d pings, want none", got-pings)
			}
			if unwedge == nil {
				return
			}
			unwedge()
			n.await(t, "pings again", func([]string) bool { return n.pings() >= pings+2 })
		})
	}
}

// hanging is a TCP server that accepts connections and never answers.
type hanging struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
	once  sync.Once
}

func hangingServer(t *testing.T) *hanging {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hanging{ln: ln}
	h.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	})
	t.Cleanup(h.close)
	return h
}

func (h *hanging) addr() string { return h.ln.Addr().String() }

func (h *hanging) awaitConn(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h.mu.Lock()
		n := len(h.conns)
		h.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing connected to the hanging server")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// close closes the listener and every connection: the client sees its peer gone.
func (h *hanging) close() {
	h.once.Do(func() {
		h.ln.Close()
		h.wg.Wait()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
}

// TestAgent_status: what STATUS= says for what the workers do.
func TestAgent_status(t *testing.T) {
	t.Parallel()
	sha := "abc1234def5678900000000000000000000000ff"
	busy := func(kind string, stage state.Status, edit func(*activity)) *activity {
		x := &activity{kind: kind, app: "web", sha: sha, stage: stage}
		if edit != nil {
			edit(x)
		}
		return x
	}
	tests := []struct {
		name     string
		web      *activity
		queued   bool
		stopping bool
		want     string
	}{
		{name: "idle", want: "idle; 2 apps"},
		{name: "fetching", web: busy(state.KindDeploy, state.StatusFetching, nil), want: "deploying web abc1234def56: fetching"},
		{name: "script", web: busy(state.KindDeploy, state.StatusScript, nil), want: "deploying web abc1234def56: running script"},
		{name: "batch", web: busy(state.KindDeploy, state.StatusStarting, func(x *activity) { x.batch, x.of = 2, 3 }),
			want: "deploying web abc1234def56 (batch 2 of 3)"},
		{name: "revert", web: busy(state.KindDeploy, state.StatusStarting, func(x *activity) { x.batch, x.of, x.revert = 1, 2, true }),
			want: "deploying web abc1234def56 (reverting: batch 1 of 2)"},
		{name: "restart taken", web: busy(state.KindRestart, state.StatusQueued, nil), want: "restarting web"},
		{name: "restart of one service", web: busy(state.KindRestart, state.StatusStarting, func(x *activity) { x.service, x.batch, x.of = "api", 1, 1 }),
			want: "restarting web service api (batch 1 of 1)"},
		{name: "rollback", web: busy(state.KindRollback, state.StatusStarting, nil), want: "rolling back web to abc1234def56: starting"},
		{name: "config", web: busy(state.KindConfig, state.StatusStarting, func(x *activity) { x.rev = 42 }), want: "config web rev 42: starting"},
		{name: "one waits", web: busy(state.KindDeploy, state.StatusFetching, nil), queued: true,
			want: "deploying web abc1234def56: fetching; 1 queued"},
		{name: "stopping, idle", stopping: true, want: "stopping"},
		{name: "stopping, draining", web: busy(state.KindDeploy, state.StatusScript, nil), queued: true, stopping: true,
			want: "stopping; waiting for deploying web abc1234def56: running script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := &Agent{apps: map[string]*app{"web": newApp(&config.App{}), "api": newApp(&config.App{})}}
			a.apps["web"].act = tt.web
			if tt.queued {
				a.apps["web"].pending = &state.Deploy{}
			}
			a.stopping.Store(tt.stopping)
			if got := a.status(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAgent_checkQueues: a worker counts as wedged only past its step's bound.
func TestAgent_checkQueues(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name    string
		act     *activity
		waiting time.Duration // a deploy queued this long ago while the worker is idle
		want    string        // "" for healthy, else part of the error
	}{
		{name: "idle"},
		{name: "fetching within the limit", act: &activity{stage: state.StatusFetching, since: now.Add(-59 * time.Minute)}},
		{name: "fetching past the limit", act: &activity{stage: state.StatusFetching, since: now.Add(-61 * time.Minute)},
			want: "worker of web wedged: deploying web abc1234def56: fetching, no progress for 1h1m0s (limit 1h0m0s)"},
		{name: "script within its timeout and the limit", act: &activity{stage: state.StatusScript, since: now.Add(-69 * time.Minute)}},
		{name: "script past its timeout and the limit", act: &activity{stage: state.StatusScript, since: now.Add(-71 * time.Minute)},
			want: "(limit 1h10m0s)"},
		{name: "a batch started lately", act: &activity{stage: state.StatusStarting, batch: 5, of: 9, since: now.Add(-10 * time.Minute)}},
		{name: "just queued", waiting: time.Second},
		{name: "never taken", waiting: time.Minute, want: "worker of web: a deploy has waited 1m0s for the idle worker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ap := newApp(&config.App{ScriptTimeout: 10 * time.Minute})
			if tt.act != nil {
				tt.act.app, tt.act.sha = "web", "abc1234def5678900000000000000000000000ff"
				ap.act = tt.act
			}
			if tt.waiting > 0 {
				ap.pending, ap.queued, ap.idle = &state.Deploy{}, now.Add(-tt.waiting), now.Add(-time.Hour)
			}
			a := &Agent{StageLimit: DefaultStageLimit, apps: map[string]*app{"web": ap}}
			err := a.checkQueues(t.Context())
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want healthy", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestAgent_checkQueues_locked: a queue lock held for good fails the check at its
// deadline instead of blocking it.
func TestAgent_checkQueues_locked(t *testing.T) {
	t.Parallel()
	ap := newApp(&config.App{})
	a := &Agent{StageLimit: DefaultStageLimit, apps: map[string]*app{"web": ap}}
	ap.mu.Lock()
	defer ap.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := a.checkQueues(ctx); err == nil || !strings.Contains(err.Error(), "queue of web: lock held") {
		t.Errorf("got %v, want the queue of web locked", err)
	}
}
