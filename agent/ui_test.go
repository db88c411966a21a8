package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// uiPort reserves a loopback port for the status page, whose URL the configuration must
// know before the agent opens (github.public_url).
func uiPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// keepScreenshot copies a screenshot to $PUSHDEPLOY_SCREENSHOT_DIR when it is set.
func keepScreenshot(t *testing.T, path string) {
	dir := os.Getenv("PUSHDEPLOY_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, filepath.Base(path)), data, 0o644)
	}
	if err != nil {
		t.Errorf("keep screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", filepath.Join(dir, filepath.Base(path)))
}

// TestAgent_statusPage runs the agent with its status page and looks at it in a real headless
// Chromium: the index shows what the agent holds, a running deploy's page follows its log
// live to the end, GitHub's log_url is that page, and 200 deploys of history load quickly.
func TestAgent_statusPage(t *testing.T) {
	testenv.ChromiumPath(t)
	addr := uiPort(t)
	base := "http://" + addr
	gate := filepath.Join(t.TempDir(), "gate")
	script := writeScript(t, "while [ -e "+gate+" ]; do sleep 0.02; done\nfor i in 1 2 3 4 5; do echo \"slow line $i\"; sleep 0.3; done")
	gh, srv := newFakeDeployments(t)
	f, _ := newGitHubFixture(t, srv, func(c *config.Config) {
		c.UI = &config.UI{Listen: addr}
		c.Apps["web"].GitHub.PublicURL = base
		c.Apps["web"].Script = config.Argv{script}
	})
	v1 := f.commit("1")
	if d := f.pushAndDeploy(v1); d.Status != state.StatusSucceeded {
		t.Fatalf("first deploy: got %s (%s)", d.Status, d.Error)
	}

	// A second deploy waits at the gate while the browser opens its page.
	os.WriteFile(gate, nil, 0o644)
	v2 := f.commit("2")
	f.push("deploy-production")
	r := f.deliver("refs/heads/deploy-production", strings.Repeat("0", 40), v2)
	if r.Code != 202 {
		t.Fatalf("deliver: got %d %s", r.Code, r.Error)
	}
	deadline := time.Now().Add(30 * time.Second)
	for d, _ := f.agent.state.Get("web", r.Deploy); d == nil || d.Status != state.StatusScript; d, _ = f.agent.state.Get("web", r.Deploy) {
		if time.Now().After(deadline) {
			t.Fatalf("deploy %s never ran its script", r.Deploy)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := testenv.NewBrowser(t)
	b.Call("Runtime.enable", nil)
	b.Call("Runtime.addBinding", map[string]any{"name": "pdSeen"})
	page := base + "/deploys/" + r.Deploy
	b.Navigate(page)
	b.Eval(`(() => {
		const log = document.getElementById("log");
		new MutationObserver(ms => { for (const m of ms) for (const n of m.addedNodes) if (n.nodeType === 1)
			pdSeen(JSON.stringify({t: n.querySelector(".t").textContent, m: n.querySelector(".m").textContent})); }).observe(log, {childList: true});
		new MutationObserver(() => { if (document.body.dataset.final) pdSeen(JSON.stringify({final: document.body.dataset.final})); })
			.observe(document.body, {attributes: true});
		return true; })()`, nil)
	time.Sleep(300 * time.Millisecond) // the EventSource connects
	os.Remove(gate)

	type seen struct{ T, M, Final string }
	var rows []seen
	var latencies []time.Duration
	final := ""
	timeout := time.After(60 * time.Second)
	for final == "" {
		select {
		case ev, ok := <-b.Events():
			if !ok {
				t.Fatal("browser connection closed")
			}
			if ev.Method != "Runtime.bindingCalled" {
				continue
			}
			var p struct{ Payload string }
			json.Unmarshal(ev.Params, &p)
			var s seen
			json.Unmarshal([]byte(p.Payload), &s)
			if s.Final != "" {
				final = s.Final
				continue
			}
			rows = append(rows, s)
			if at, err := time.Parse("2006-01-02 15:04:05.000", ev.At.UTC().Format("2006-01-02 ")+s.T); err == nil {
				latencies = append(latencies, ev.At.Sub(at))
			}
		case <-timeout:
			t.Fatalf("the page did not see the deploy end; rows seen: %v", rows)
		}
	}
	d := f.wait(r.Deploy)
	if final != string(d.Status) || d.Status != state.StatusSucceeded {
		t.Errorf("page says %q at the end, the agent %s (%s)", final, d.Status, d.Error)
	}
	var outLines []string
	for _, s := range rows {
		if strings.HasPrefix(s.M, "slow line") {
			outLines = append(outLines, s.M)
		}
	}
	if want := []string{"slow line 1", "slow line 2", "slow line 3", "slow line 4", "slow line 5"}; !slices.Equal(outLines, want) {
		t.Errorf("script lines the page received live: got %q, want %q", outLines, want)
	}
	// The page now holds every line of the log file, once.
	logFile, _ := os.ReadFile(f.agent.dirs.DeployLog("web", r.Deploy))
	var pageRows int
	var status string
	var steps []string
	b.Eval(`document.querySelectorAll("#log tr").length`, &pageRows)
	b.Eval(`document.querySelector("#status .badge").textContent`, &status)
	b.Eval(`[...document.querySelectorAll("#steps .step")].map(e => e.textContent)`, &steps)
	if want := strings.Count(string(logFile), "\n"); pageRows != want {
		t.Errorf("log rows on the page: got %d, want the log file's %d lines", pageRows, want)
	}
	if status != "succeeded" || !slices.Contains(steps, "running-script") || !slices.Contains(steps, "succeeded") {
		t.Errorf("page: status %q, steps %q; want succeeded, with running-script and succeeded", status, steps)
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	if len(latencies) > 0 {
		t.Logf("figure: log line written -> shown in the browser: median %v, max %v over %d lines",
			latencies[len(latencies)/2], latencies[len(latencies)-1], len(latencies))
	}
	shot := filepath.Join(t.TempDir(), "pushdeploy-deploy-page.png")
	b.Screenshot(shot)
	keepScreenshot(t, shot)

	// GitHub's log_url is this page.
	id := gh.deploymentOf(r.Deploy)
	st := gh.waitStates(id, 3)
	logURL, _ := st[len(st)-1]["log_url"].(string)
	if logURL != page {
		t.Errorf("log_url: got %q, want %q", logURL, page)
	}
	if resp, err := http.Get(logURL); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET log_url %s: %v, %v", logURL, resp.Status, err)
	} else {
		resp.Body.Close()
	}

	// The index, as Chromium renders it, shows what the agent holds.
	dom := testenv.Chromium(t, "--dump-dom", base+"/")
	cur := f.current()
	for _, want := range []string{`id="app-web"`, "acme/web", `<span class="mono sha">` + cur[:12] + `</span>`, `class="mark m-good"`,
		"deploys/" + r.Deploy, "deploys/" + f.lastID(t, v1)} {
		if !strings.Contains(dom, want) {
			t.Errorf("index lacks %q:\n%s", want, dom)
		}
	}
	if cur != v2 {
		t.Errorf("current: got %.12s, want %.12s", cur, v2)
	}
	phone := filepath.Join(t.TempDir(), "pushdeploy-index-phone.png")
	testenv.Chromium(t, "--screenshot="+phone, "--window-size=390,844", base+"/")
	keepScreenshot(t, phone)

	// 200 deploys of history: how long the pages take to load.
	now := time.Now().UTC()
	for i := range 200 {
		d := &state.Deploy{ID: f.agent.ids.Next(now), App: "web", Kind: state.KindDeploy, SHA: v2, Branch: "deploy-production",
			Status: state.StatusSucceeded, Queued: now, Started: now, Finished: now.Add(time.Duration(i) * time.Millisecond), Message: "version 2"}
		if err := f.agent.state.Save(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{"/", "/apps/web"} {
		start := time.Now()
		const n = 20
		for range n {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		server := time.Since(start) / n
		b.Navigate(base + path)
		var nav float64
		var rowsShown int
		b.Eval(`performance.getEntriesByType("navigation")[0].duration`, &nav)
		b.Eval(`document.querySelectorAll("table.history tbody tr").length`, &rowsShown)
		t.Logf("figure: %s with %d deploys in history: %d rows; served in %v (mean of %d), loaded in Chromium in %.1f ms",
			path, 202, rowsShown, server.Round(10*time.Microsecond), n, nav)
	}
}

// lastID is the id of the newest deploy of sha.
func (f *fixture) lastID(t *testing.T, sha string) string {
	t.Helper()
	hist, err := f.agent.state.History("web", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range hist {
		if d.SHA == sha {
			return d.ID
		}
	}
	t.Fatalf("no deploy of %.12s", sha)
	return ""
}

// checkStatusPage checks what the status page's backend says of app web's four instances of
// service web, all on release sha: active, and their last health answer from a rollout.
func checkStatusPage(t *testing.T, f *fixture, sha string) {
	t.Helper()
	apps, err := uiBackend{f.agent}.Apps(t.Context())
	if err != nil || len(apps) != 1 || apps[0].Error != "" {
		t.Fatalf("status page apps: got %+v, %v", apps, err)
	}
	svcs := apps[0].Services
	if len(svcs) != 1 || svcs[0].Name != "web" || len(svcs[0].Instances) != 4 {
		t.Fatalf("status page services: got %+v, want service web with 4 instances", svcs)
	}
	for i, in := range svcs[0].Instances {
		if want := fmt.Sprintf("pushdeploy-web-web@%d.service", i+1); in.Unit != want || in.State != "active" || in.SubState != "running" || in.Since.IsZero() {
			t.Errorf("instance %d: got %+v, want %s active (running) since a time", i+1, in, want)
		}
		if h := in.Health; h == nil || !strings.HasPrefix(sha, h.Release) || len(h.Release) < 12 || (h.Verdict != "healthy" && h.Verdict != "settled") {
			t.Errorf("instance %d: last health answer %+v, want healthy or settled on %.12s", i+1, h, sha)
		}
	}
}
