package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/hooks"
	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// stress is set by make stress: the crash test then kills the agent hundreds of times.
var stress = os.Getenv("PUSHDEPLOY_STRESS") != ""

// The phases of a deploy a kill can land in, as the agent's log shows them: between
// deploys, fetching, laying out the release, running the script, rolling the instances
// out, and from the rollout's end to the deploy's (switching current, marking it good,
// retention).
var crashPhases = []string{"fetch", "layout", "script", "rollout", "switch"}

// TestCrash_killNine kills the real agent process with SIGKILL at random moments of
// deploys of a repository of thousands of files that change at every push, restarts it,
// lets it settle, and checks after every kill that:
//   - current is the branch's tip (every push deployed, or caught up), and its tree is
//     exactly `git archive` of its commit (paths, contents, exec bits, symlink targets);
//   - `pushdeploy releases check` passes for current and, after a kill where releases are
//     laid out or removed (and every fifth kill), for every release on disk;
//   - every installed unit file names the current release, which exists;
//   - every delivery answered 202 has a final status in the history, none failed, no
//     deploy is left queued or running;
//   - both instances run the current release's binary and answer its health check and
//     VERSION;
//   - no temporary file or directory of an interrupted operation is left, and no two runs
//     of the deploy script overlapped;
//   - meanwhile (watched every 200µs, kills or not), current always named a whole release.
//
// Kills are aimed at each phase in turn: the test waits until the log shows the phase,
// then kills after a random part of that phase's duration measured on an undisturbed
// deploy; where the kill landed is read from the dead agent's log. 40 kills within 4
// minutes (300 within 45 under PUSHDEPLOY_STRESS; PUSHDEPLOY_CRASH_KILLS and
// PUSHDEPLOY_CRASH_SEED override the count and the seed).
func TestCrash_killNine(t *testing.T) {
	// The kills stop early, saying so, past budget: on a machine busy with other work a
	// kill costs several times what it does on a quiet one, and the rest of the package's
	// tests share its -timeout.
	kills, files, budget := 40, 1500, 4*time.Minute
	if stress {
		kills, files, budget = 300, 4000, 45*time.Minute
	}
	if n, err := strconv.Atoi(os.Getenv("PUSHDEPLOY_CRASH_KILLS")); err == nil {
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("PUSHDEPLOY_CRASH_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (PUSHDEPLOY_CRASH_SEED), %d kills, %d files", seed, kills, files)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	c := newCrashRig(t, rng, files)
	c.pushAndSettle("warm-up 1") // the first release: every object is new
	c.watchCurrent()
	durs := c.measure() // an undisturbed incremental deploy, phase by phase
	// The switch is a few milliseconds, then retention removes the oldest release (which
	// the measured deploy, the second, had none to remove): aim over both.
	durs["switch"] = max(durs["switch"], 80)
	t.Logf("deploy phases (ms): %v", durs)

	landed := map[string]int{}
	bad := 0
	start := time.Now()
	for i := range kills {
		if dl, ok := t.Deadline(); time.Since(start) > budget || ok && time.Until(dl) < 3*time.Minute {
			t.Logf("stopping after %d of %d kills: %v spent (budget %v), or the test's -timeout is near",
				i, kills, time.Since(start).Round(time.Second), budget)
			break
		}
		target := crashPhases[i%len(crashPhases)]
		phase := c.killDuring(target, durs[target])
		landed[phase]++
		if phase != target {
			// The phase ended before the kill: it is shorter than measured (one measure on a
			// busy machine, or a resumed deploy's). Aim earlier next time.
			durs[target] = durs[target] * 2 / 3
		}
		every := phase == "layout" || phase == "switch" || phase == "idle" || i%5 == 0
		if probs := c.check(every); len(probs) > 0 {
			bad++
			t.Errorf("after kill %d (aimed at %s, landed in %s): inconsistent:\n  %s\nagent log:\n%s",
				i+1, target, phase, strings.Join(probs, "\n  "), tail(c.e.agentLog(), 40))
			if bad >= 10 {
				break
			}
		}
	}
	var parts []string
	for _, p := range append([]string{"idle"}, crashPhases...) {
		if p != "idle" || landed[p] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p, landed[p]))
		}
	}
	n := 0
	for _, v := range landed {
		n += v
	}
	t.Logf("crash: %d kills (%s), %d inconsistent states, %d deliveries accepted, in %v",
		n, strings.Join(parts, ", "), bad, len(c.accepted), time.Since(start).Round(time.Second))
	for _, p := range crashPhases {
		if landed[p] == 0 && n >= 2*len(crashPhases) && bad == 0 {
			t.Errorf("no kill landed in phase %s: the test does not aim where it says", p)
		}
	}
}

// crashRig is the agent under test (a real process), its git server, systemd user
// manager and repository.
type crashRig struct {
	t        *testing.T
	e        *e2e
	sd       *testenv.Systemd
	repo     *crashRepo
	rng      *rand.Rand
	dirs     datadir.Layout
	secret   []byte
	port     int // the app's first instance
	version  int
	tipSHA   string
	mu       sync.Mutex
	accepted []string // deploy ids of deliveries answered 202
	reported map[string]bool
	seen     []string // what watchCurrent saw wrong, not yet reported
}

// watchCurrent reads current every 200µs until the test ends, whatever the agent does
// (deploying, dying, starting): it must always name a release whose VERSION is there. A
// switch that is not one rename, or a release removed while current names it, shows here
// even when no kill lands in it.
func (c *crashRig) watchCurrent() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c.t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		link := c.dirs.Current("web")
		for ctx.Err() == nil {
			target, err := os.Readlink(link)
			if err == nil {
				_, err = os.Stat(filepath.Join(c.dirs.App("web"), target, "VERSION"))
			}
			if err != nil {
				c.mu.Lock()
				if len(c.seen) < 5 {
					c.seen = append(c.seen, fmt.Sprintf("at %s current did not name a whole release: %v", time.Now().Format("15:04:05.000000"), err))
				}
				c.mu.Unlock()
			}
			time.Sleep(200 * time.Microsecond)
		}
	})
}

func newCrashRig(t *testing.T, rng *rand.Rand, files int) *crashRig {
	sd := testenv.StartSystemd(t)
	e := &e2e{t: t, bin: binary(t), dir: t.TempDir()}
	root := testenv.NewRoot(t)
	e.bare = testenv.NewBare(t, root, "acme/web.git", true)
	url := testenv.GitHTTP(t, root) + "acme/web.git"
	data := testenv.DataDirOutsideTmp(t)
	c := &crashRig{t: t, e: e, sd: sd, rng: rng, dirs: datadir.Layout{Root: data}, secret: []byte("crash-secret"),
		port: testenv.FreePorts(t, 2), reported: map[string]bool{}}
	c.repo = newCrashRepo(t, rng, files, c.port)
	secret := filepath.Join(e.dir, "secret")
	script := filepath.Join(e.dir, "deploy.sh")
	// The script notes when it starts while an earlier run of it still runs (a zombie
	// does not run: a killed agent's children may be left unreaped).
	os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
f=%[1]s/script.pid
if [ -e "$f" ] && [ -e "/proc/$(cat "$f")/stat" ] && ! grep -q ') Z ' "/proc/$(cat "$f")/stat"; then
  echo "$PUSHDEPLOY_DEPLOY_ID: script pid $(cat "$f") still runs" >>%[1]s/overlaps
fi
echo $$ >"$f"
sleep 0.2
rm -f "$f"
`, e.dir)), 0o755)
	os.WriteFile(secret, append(c.secret, '\n'), 0o600)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	e.config = filepath.Join(e.dir, "agent.yaml")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%s
data_dir: %s
environments: [production]
history_limit: 10000
systemd:
  scope: user
  unit_dir: %s
  bus: %s
  journal_dir: %s
  settle: 50ms
apps:
  web:
    repo: acme/web
    remote: %s
    secret_file: %s
    script: %s
    keep_releases: 3
`, e.port, data, sd.UnitDir, sd.BusAddress, filepath.Join(sd.JournalDir, "journal"), url, secret, script)
	os.WriteFile(e.config, []byte(cfg), 0o600)
	t.Cleanup(func() { e.kill(syscall.SIGKILL) })
	e.start()
	return c
}

// commit makes the next version, pushes it to the branch and returns its sha.
func (c *crashRig) commit() string {
	c.version++
	var sha string
	if c.version == 1 {
		sha = c.repo.commit("1")
	} else {
		sha = c.repo.change(strconv.Itoa(c.version))
	}
	return sha
}

// push moves the branch to sha (already committed) without failing the test: it may run
// on a goroutine of its own.
func (c *crashRig) push(sha string) error {
	out, err := exec.Command("git", "-C", c.repo.repo.Dir(), "push", "-q", "--force", c.e.bare.Path(),
		sha+":refs/heads/deploy-production").CombinedOutput()
	if err != nil {
		return fmt.Errorf("git push: %v: %s", err, out)
	}
	return nil
}

// deliver sends the signed push webhook of sha and records its deploy id when the agent
// answered 202. An agent killed meanwhile answers nothing: that push is for catch-up.
func (c *crashRig) deliver(before, sha string) {
	payload, err := hooks.PushPayload(hooks.PushInput{Repo: "acme/web", Ref: "refs/heads/deploy-production",
		Before: before, After: sha, Pusher: "crash"})
	if err != nil {
		panic(err) // cannot be: every input is valid
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ans, err := hooks.Send(ctx, &http.Client{}, "http://127.0.0.1:"+c.e.port+"/webhook/web", c.secret, "push", payload)
	if err == nil && ans.StatusCode == http.StatusAccepted {
		c.mu.Lock()
		c.accepted = append(c.accepted, ans.Deploy)
		c.mu.Unlock()
	}
}

// pushAndSettle deploys the next version undisturbed.
func (c *crashRig) pushAndSettle(what string) {
	c.t.Helper()
	before := c.tipSHA
	sha := c.commit()
	if err := c.push(sha); err != nil {
		c.t.Fatal(err)
	}
	c.tipSHA = sha
	c.deliver(orZero(before), sha)
	if probs := c.check(true); len(probs) > 0 {
		c.t.Fatalf("%s: %s", what, strings.Join(probs, "\n"))
	}
}

// measure deploys the next version undisturbed and returns how long each phase took, in
// milliseconds, as the log showed them.
func (c *crashRig) measure() map[string]int {
	before := c.tipSHA
	sha := c.commit()
	if err := c.push(sha); err != nil {
		c.t.Fatal(err)
	}
	c.tipSHA = sha
	go c.deliver(before, sha)
	entered := map[string]time.Time{}
	last := "idle"
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		p, final, _ := phaseOf(c.e.agentLog())
		if p != last {
			entered[p] = time.Now()
			last = p
		}
		if final && len(entered) > 0 {
			entered["end"] = time.Now()
			break
		}
	}
	durs := map[string]int{}
	order := append(slices.Clone(crashPhases), "end")
	for i, p := range crashPhases {
		for _, q := range order[i+1:] {
			if !entered[q].IsZero() && !entered[p].IsZero() {
				durs[p] = int(entered[q].Sub(entered[p]).Milliseconds())
				break
			}
		}
	}
	if probs := c.check(true); len(probs) > 0 {
		c.t.Fatalf("undisturbed deploy: %s", strings.Join(probs, "\n"))
	}
	return durs
}

// killDuring pushes the next version (now and then two, the second a moment later) and
// kills the agent once it is in phase target, after a random part of dur milliseconds,
// then starts it again. It returns the phase the kill landed in.
func (c *crashRig) killDuring(target string, dur int) string {
	before := c.tipSHA
	shas := []string{c.commit()}
	if c.rng.IntN(4) == 0 {
		shas = append(shas, c.commit())
	}
	gap := time.Duration(c.rng.IntN(300)) * time.Millisecond
	delay := time.Duration(c.rng.IntN(max(dur, 1))) * time.Millisecond
	c.tipSHA = shas[len(shas)-1]
	var wg sync.WaitGroup
	var pushErr error
	sent := make(chan struct{})
	wg.Go(func() {
		defer close(sent)
		for k, sha := range shas {
			if k > 0 {
				time.Sleep(gap)
			}
			if err := c.push(sha); err != nil {
				pushErr = err
				return
			}
			c.deliver(orZero(before), sha)
			before = sha
		}
	})
	// Wait for the phase; deploys that end without it (stale, superseded) are killed idle.
	_, _, before0 := phaseOf(c.e.agentLog())
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		p, ended, started := phaseOf(c.e.agentLog())
		if p == target {
			break
		}
		select {
		case <-sent:
			if ended && p == "idle" && started > before0 {
				deadline = time.Time{}
			}
		default:
		}
	}
	time.Sleep(delay)
	c.e.kill(syscall.SIGKILL)
	phase, _, _ := phaseOf(c.e.agentLog())
	wg.Wait()
	if pushErr != nil {
		c.t.Fatal(pushErr)
	}
	c.e.start()
	return phase
}

// phaseOf reads the agent's JSON log and returns the phase of the deploy under way (idle
// when none), whether the last deploy that started has ended, and how many started.
func phaseOf(log string) (phase string, ended bool, started int) {
	phase = "idle"
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !json.Valid(line) {
			continue
		}
		var l struct{ Message, Status string }
		json.Unmarshal(line, &l)
		switch l.Message {
		case "deploy started":
			ended = false
			started++
		case "deploy status":
			switch l.Status {
			case "fetching":
				phase = "fetch"
			case "releasing":
				phase = "layout"
			case "running-script":
				phase = "script"
			case "starting":
				phase = "rollout"
			default:
				phase = "idle"
				ended = ended || l.Status != "queued"
			}
		case "services running":
			phase = "switch"
		}
	}
	return phase, ended, started
}

type crashDeploy struct {
	ID, Kind, SHA, Status, Error, Note string
}

// settle waits until no deploy is queued or under way and current is the branch's tip,
// and returns the history, current, and what kept it from settling.
func (c *crashRig) settle() ([]crashDeploy, string, []string) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var hist []crashDeploy
		out, err := exec.Command(c.e.bin, "history", "web", "-n", "0", "--json", "--config", c.e.config).Output()
		if err == nil {
			err = json.Unmarshal(out, &hist)
		}
		cur, _ := os.Readlink(c.dirs.Current("web"))
		cur = filepath.Base(cur)
		var open []string
		for _, d := range hist {
			if !slices.Contains([]string{"succeeded", "failed", "superseded", "stale", "halted"}, d.Status) {
				open = append(open, fmt.Sprintf("%s %s of %.12s is %s", d.ID, d.Kind, d.SHA, d.Status))
			}
			if d.SHA == c.tipSHA && d.Status == "failed" {
				return hist, cur, []string{fmt.Sprintf("deploy %s of the tip %.12s failed: %s", d.ID, d.SHA, d.Error)}
			}
		}
		if err == nil && len(open) == 0 && cur == c.tipSHA {
			return hist, cur, nil
		}
		if time.Now().After(deadline) {
			why := append(open, fmt.Sprintf("current is %.12s, the tip %.12s (history: %v)", cur, c.tipSHA, err))
			// Where it is stuck: the Go runtime prints every goroutine on SIGQUIT.
			c.e.kill(syscall.SIGQUIT)
			why = append(why, "agent log and goroutines:\n"+tail(c.e.agentLog(), 400))
			c.e.start()
			return hist, cur, append([]string{"did not settle in 3 minutes:"}, why...)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// check settles the agent and returns every inconsistency it finds. releases check runs
// on current, and with every on each release on disk (a kill that lands where releases
// are laid out or removed is what could leave one half made).
func (c *crashRig) check(every bool) []string {
	hist, cur, probs := c.settle()
	if len(probs) > 0 {
		return probs
	}
	byID := map[string]crashDeploy{}
	for _, d := range hist {
		byID[d.ID] = d
		if d.Status == "failed" && !c.reported[d.ID] {
			c.reported[d.ID] = true
			probs = append(probs, fmt.Sprintf("deploy %s of %.12s failed: %s", d.ID, d.SHA, d.Error))
		}
	}
	c.mu.Lock()
	probs = append(probs, c.seen...)
	c.seen = nil
	for _, id := range c.accepted {
		if _, ok := byID[id]; !ok {
			probs = append(probs, fmt.Sprintf("accepted delivery's deploy %s is not in the history", id))
		}
	}
	c.mu.Unlock()
	diffs, err := diffTree(c.e.bare.Path(), cur, c.dirs.Release("web", cur))
	if err != nil {
		probs = append(probs, err.Error())
	}
	for _, d := range diffs {
		probs = append(probs, "current release "+cur[:12]+": "+d)
	}
	var rels []struct{ SHA string }
	if out, err := exec.Command(c.e.bin, "releases", "list", "web", "--json", "--config", c.e.config).Output(); err != nil {
		probs = append(probs, fmt.Sprintf("releases list: %v", err))
	} else if err := json.Unmarshal(out, &rels); err != nil {
		probs = append(probs, fmt.Sprintf("releases list: %v", err))
	}
	for _, r := range rels {
		if !every && r.SHA != cur {
			continue
		}
		if out, err := exec.Command(c.e.bin, "releases", "check", "web", r.SHA, "--config", c.e.config).CombinedOutput(); err != nil {
			probs = append(probs, fmt.Sprintf("releases check web %.12s: %v\n%s", r.SHA, err, tail(string(out), 5)))
		}
	}
	probs = append(probs, unitProblems(c.sd, c.dirs, "web", cur)...)
	probs = append(probs, instanceProblems(c.sd, c.dirs, "web", cur, c.port)...)
	probs = append(probs, leftovers(c.dirs, "web")...)
	if data, err := os.ReadFile(filepath.Join(c.e.dir, "overlaps")); err == nil {
		probs = append(probs, "deploy scripts overlapped: "+string(data))
		os.Remove(filepath.Join(c.e.dir, "overlaps"))
	}
	return probs
}

func orZero(sha string) string {
	if sha == "" {
		return strings.Repeat("0", 40)
	}
	return sha
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
