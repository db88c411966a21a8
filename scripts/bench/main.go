package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	app       = "bench"
	repo      = "acme/bench"
	largeApp  = "large"
	largeRepo = "acme/large"
	branch    = "deploy-production"
)

type options struct {
	bin      string
	out      string
	keep     bool
	spec     repoSpec
	large    repoSpec // Files 0: no large point
	releases int
	clients  int
	requests int
	flood    floodOptions
}

type floodOptions struct {
	big, clients, bigSenders, pushes int
}

func main() {
	var o options
	var mib, largeMiB int
	flag.StringVar(&o.bin, "bin", "bin/pushdeploy", "the pushdeploy binary to drive")
	flag.StringVar(&o.out, "out", ".bench/results.json", "write the results as JSON here")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (its path is printed)")
	flag.IntVar(&o.spec.Files, "files", 10000, "files in the generated repository")
	flag.IntVar(&mib, "mib", 150, "their total size in MiB")
	flag.IntVar(&o.spec.Dirs, "dirs", 200, "leaf directories they are spread over")
	flag.IntVar(&o.releases, "releases", 10, "releases deployed before measuring disk use (at least 2)")
	flag.IntVar(&o.clients, "clients", 8, "concurrent webhook clients")
	flag.IntVar(&o.requests, "requests", 2000, "webhooks sent per event")
	flag.IntVar(&o.flood.big, "flood-big", 20, "concurrent 30 MB bodies whose peak RSS is measured")
	flag.IntVar(&o.flood.clients, "flood-clients", 8, "senders of bad webhooks during the real pushes")
	flag.IntVar(&o.flood.bigSenders, "flood-big-senders", 4, "senders of 30 MB bodies during the real pushes")
	flag.IntVar(&o.flood.pushes, "flood-pushes", 200, "real pushes during the flood, one per 50 ms (0: no flood)")
	flag.IntVar(&o.large.Files, "large-files", 100000, "files in the large point's repository (0: no large point)")
	flag.IntVar(&largeMiB, "large-mib", 1024, "their total size in MiB")
	flag.IntVar(&o.large.Dirs, "large-dirs", 2000, "leaf directories they are spread over")
	flag.Parse()
	o.large.Bytes = int64(largeMiB) << 20
	o.large.Exec, o.large.Symlinks, o.large.Seed, o.large.Versions = 200, 200, 2, 2
	o.spec.Bytes = int64(mib) << 20
	o.spec.Exec, o.spec.Symlinks, o.spec.Seed = 20, 20, 1
	o.releases = max(o.releases, 2)
	o.spec.Versions = o.releases

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "\nbench interrupted; its processes and files are removed")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "\nbench FAILED: %v\n", err)
		stop()
		os.Exit(1)
	}
}

// step prints progress to stderr; the table goes to stdout.
func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func run(ctx context.Context, o options) (err error) {
	began := time.Now()
	var r results
	r.Date = began.UTC()
	r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Machine.Go = runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()

	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run make build)", o.bin, err)
	}
	r.Machine.Bin = bin
	if v, err := exec.CommandContext(ctx, bin, "version").Output(); err == nil {
		r.Machine.Bin = strings.TrimSpace(string(v))
	}
	if v, err := gitOutput(ctx, "", "version"); err == nil {
		r.Machine.Git = v
	} else {
		return err
	}

	work, err := os.MkdirTemp("", "pushdeploy-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			step("kept %s", work)
			return
		}
		if rerr := removeAll(work); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", work, rerr)
		}
	}()

	// The "GitHub" side: a bare repository with every version, served over smart HTTP.
	root := filepath.Join(work, "srv")
	bare := filepath.Join(root, repo+".git")
	step("generating %d files, %s, %d versions …", o.spec.Files, human(o.spec.Bytes), o.spec.Versions)
	t := time.Now()
	gen, err := generateBare(ctx, bare, o.spec)
	if err != nil {
		return err
	}
	r.Repo.Files, r.Repo.Exec, r.Repo.Symlinks, r.Repo.Dirs, r.Repo.Bytes = gen.Files, gen.Exec, gen.Symlinks, gen.Dirs, gen.Bytes
	r.Repo.Commits, r.Repo.Changed = gen.Commits, gen.Changed
	r.Repo.GenSecs = time.Since(t).Seconds()
	step("generated in %s", secs(r.Repo.GenSecs))

	srv, err := startGitServer(root)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := srv.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("stop git server: %w", cerr)
		}
	}()
	remote := srv.URL + repo + ".git"
	r.Server = remote

	// The host side: the real agent.
	secret := make([]byte, 32)
	rand.Read(secret)
	secret = []byte(hex.EncodeToString(secret))
	secretFile := filepath.Join(work, "bench.secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		return err
	}
	dataDir := filepath.Join(work, "data")
	config := filepath.Join(work, "agent.yaml")
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
data_dir: %s
host: bench-host
environments: [production]
apps:
  %s:
    repo: %s
    remote: %s
    secret_file: %s
    keep_releases: 20
`, dataDir, app, repo, remote, secretFile)
	largeRemote := srv.URL + largeRepo + ".git"
	if o.large.Files > 0 {
		yaml += fmt.Sprintf(`  %s:
    repo: %s
    remote: %s
    secret_file: %s
`, largeApp, largeRepo, largeRemote, secretFile)
	}
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		return err
	}
	agent, err := startAgent(bin, config, filepath.Join(work, "agent.log"))
	if agent != nil {
		defer func() {
			if serr := agent.Stop(); serr != nil && err == nil {
				err = fmt.Errorf("%w\nagent log:\n%s", serr, agent.LogTail(40))
			}
		}()
	}
	if err != nil {
		if agent != nil {
			return fmt.Errorf("%w\nagent log:\n%s", err, agent.LogTail(60))
		}
		return err
	}
	// Any failure from here on shows what the agent and the git server said.
	defer func() {
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w\n\nagent log (%s):\n%s", err, agent.logPath, agent.LogTail(60))
			if l := strings.TrimSpace(srv.Log()); l != "" {
				err = fmt.Errorf("%w\n\ngit http-backend stderr:\n%s", err, tail(l, 20))
			}
		}
	}()
	step("agent %s listening on %s, remote %s", r.Machine.Bin, agent.Addr, remote)

	hooks := newHookSender(agent.Addr, app, secret, o.clients)
	defer hooks.close()
	b := &bench{srv: srv, agent: agent}
	small := &target{app: app, repo: repo, bare: bare, remote: remote, gen: gen, hooks: hooks}
	deploy := func(v int, timeout time.Duration) (deployFigures, error) {
		return b.deploy(ctx, small, v, timeout)
	}

	// 1. First version: pushdeploy, then a plain shallow clone of the same commit.
	step("1. deploying version 1 …")
	if r.FirstDeploy, err = deploy(0, 3*time.Minute); err != nil {
		return fmt.Errorf("first deploy: %w", err)
	}
	step("   deployed in %s, fetched %s", secs(r.FirstDeploy.Seconds), human(r.FirstDeploy.FetchBytes))
	clone := filepath.Join(work, "clone1")
	if r.FirstClone, err = timeClone(ctx, srv, remote, branch, clone); err != nil {
		return err
	}
	step("   git clone --depth 1 in %s, pack %s", secs(r.FirstClone.Seconds), human(r.FirstClone.PackBytes))
	if r.Disk.CloneWhole, err = diskUsage(clone); err != nil {
		return err
	}
	if r.Disk.CloneWorktree, err = diskUsage(clone, ".git"); err != nil {
		return err
	}
	if r.Disk.CloneGitDir, err = diskUsage(filepath.Join(clone, ".git")); err != nil {
		return err
	}
	// The clones stay until the end: on ext4 without a journal, creating files soon after
	// deleting many is slow (every new inode is checked against recently deleted ones), which
	// would slow down whatever step came next.

	// 2. One file changed.
	step("2. deploying version 2 (%s changed) …", gen.Changed[0])
	if r.SecondDeploy, err = deploy(1, time.Minute); err != nil {
		return fmt.Errorf("second deploy: %w", err)
	}
	step("   deployed in %s, fetched %s", secs(r.SecondDeploy.Seconds), human(r.SecondDeploy.FetchBytes))
	clone = filepath.Join(work, "clone2")
	if r.SecondClone, err = timeClone(ctx, srv, remote, branch, clone); err != nil {
		return err
	}
	step("   git clone --depth 1 in %s, pack %s", secs(r.SecondClone.Seconds), human(r.SecondClone.PackBytes))

	// 3. More releases, each one file changed, then the disk they take.
	for v := 2; v < o.releases; v++ {
		f, err := deploy(v, time.Minute)
		if err != nil {
			return fmt.Errorf("deploy of version %d: %w", v+1, err)
		}
		step("3. version %d deployed in %s, fetched %s", v+1, secs(f.Seconds), human(f.FetchBytes))
	}
	if err := r.measureDisk(ctx, agent, dataDir, o.releases); err != nil {
		return err
	}
	step("   %d releases take %s (objects %s, cache.git %s)", r.Disk.Releases, human(r.Disk.DataDir), human(r.Disk.Objects), human(r.Disk.Cache))
	out, err := agent.CLI(ctx, "releases", "check", app)
	if err != nil {
		return fmt.Errorf("current release is not the commit's exact tree: %w", err)
	}
	step("   releases check: %s", tail(strings.TrimSpace(string(out)), 1))

	// 4. Webhook throughput: every push answered is an fsync of the state file.
	syscall.Sync()
	step("4. %d signed push webhooks for an ignored branch, %d clients …", o.requests, o.clients)
	push := pushBody(repo, "refs/heads/feature-bench", gen.Commits[0], gen.Commits[1])
	if r.Webhooks.Push, err = hooks.load(ctx, "push", push, "ignored", o.clients, o.requests); err != nil {
		return err
	}
	step("   %.0f req/s", r.Webhooks.Push.PerSec)
	step("4. %d signed pings …", o.requests)
	if r.Webhooks.Ping, err = hooks.load(ctx, "ping", pingBody(repo), "ignored", o.clients, o.requests); err != nil {
		return err
	}
	step("   %.0f req/s", r.Webhooks.Ping.PerSec)
	// The large point before the flood: the memory the flood's bodies took is not all given
	// back to the kernel at once, and the large point's peak RSS would start from it.
	if o.large.Files > 0 {
		lh := newHookSender(agent.Addr, largeApp, secret, 1)
		defer lh.close()
		tg := &target{app: largeApp, repo: largeRepo, bare: filepath.Join(root, largeRepo+".git"), remote: largeRemote, hooks: lh}
		if r.Large, err = b.large(ctx, work, tg, o.large); err != nil {
			return err
		}
	}
	if fo := o.flood; fo.pushes > 0 {
		step("7. %d concurrent 30 MB bodies, then %d real pushes among %d senders of bad webhooks and %d of 30 MB bodies …",
			fo.big, fo.pushes, fo.clients, fo.bigSenders)
		f, err := b.flood(ctx, hooks, gen.Commits[o.releases-1], fo.big, fo.clients, fo.bigSenders, fo.pushes)
		if err != nil {
			return err
		}
		r.Flood = &f
		step("   peak RSS %s (idle %s); pushes p99 %.2f ms among %.0f bad req/s", human(f.BigPeakRSS), human(f.BigIdleRSS), f.PushP99ms, f.BadPerSec)
	}
	if err := agent.Exited(); err != nil {
		return err
	}
	r.Notes = append(r.Notes, agentComplaints(agent.logPath)...)

	r.Seconds = time.Since(began).Seconds()
	r.printTable(os.Stdout)
	if err := r.writeJSON(o.out); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Printf("results: %s\n", o.out)
	return nil
}

// measureDisk fills r.Disk from the data directory, after checking that it holds exactly
// the releases deployed.
func (r *results) measureDisk(ctx context.Context, agent *agentProc, dataDir string, want int) error {
	out, err := agent.CLI(ctx, "releases", "list", app, "--json")
	if err != nil {
		return err
	}
	var rels []struct {
		SHA string `json:"sha"`
	}
	if err := json.Unmarshal(out, &rels); err != nil {
		return fmt.Errorf("pushdeploy releases list --json: %w", err)
	}
	if len(rels) != want {
		return fmt.Errorf("pushdeploy releases list: %d releases, want %d (keep_releases is 20)", len(rels), want)
	}
	d := &r.Disk
	d.Releases = len(rels)
	if d.DataDir, err = diskUsage(dataDir); err != nil {
		return err
	}
	if d.Objects, err = diskUsage(filepath.Join(dataDir, "objects")); err != nil {
		return err
	}
	if d.Cache, err = diskUsage(filepath.Join(dataDir, "apps", app, "cache.git")); err != nil {
		return err
	}
	d.Rest = d.DataDir - d.Objects - d.Cache
	return nil
}

// agentComplaints lists the distinct warning and error messages in the agent's log.
func agentComplaints(logPath string) []string {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return []string{fmt.Sprintf("read agent log: %v", err)}
	}
	seen := map[string]int{}
	var order []string
	for _, line := range strings.Split(string(data), "\n") {
		var l struct {
			Level   string `json:"level"`
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || (l.Level != "warn" && l.Level != "error") {
			continue
		}
		k := fmt.Sprintf("agent logged %s %q %s", l.Level, l.Message, l.Error)
		if seen[k] == 0 {
			order = append(order, k)
		}
		seen[k]++
	}
	var notes []string
	for _, k := range order {
		notes = append(notes, fmt.Sprintf("%s (×%d)", k, seen[k]))
	}
	return notes
}

// bench is what every measurement uses: the git server and the running agent.
type bench struct {
	srv   *gitServer
	agent *agentProc
}

// target is one app the agent deploys, and the bare repository on the server it deploys
// from, holding the generated versions.
type target struct {
	app, repo string
	bare      string // the repository's directory on the server
	remote    string // its URL
	gen       *genRepo
	hooks     *hookSender
}

// deploy points the deploy branch of tg at version v, sends the push webhook and waits for
// the deploy to succeed. The agent's peak RSS is measured from just before the webhook.
func (b *bench) deploy(ctx context.Context, tg *target, v int, timeout time.Duration) (deployFigures, error) {
	var f deployFigures
	sha := tg.gen.Commits[v]
	if _, err := gitOutput(ctx, tg.bare, "update-ref", "refs/heads/"+branch, sha); err != nil {
		return f, err
	}
	before := ""
	if v > 0 {
		before = tg.gen.Commits[v-1]
	}
	// The agent makes a release durable with syncfs(2): flush what earlier steps left
	// dirty first, so that it is not charged for writing them.
	syscall.Sync()
	if err := b.agent.ResetPeakRSS(); err != nil {
		return f, err
	}
	cpu0, err := b.agent.CPUTime()
	if err != nil {
		return f, err
	}
	load := loadAverage()
	sent := b.srv.Sent()
	id, at, err := tg.hooks.deploy(ctx, tg.repo, branch, before, sha)
	if err != nil {
		return f, err
	}
	d, err := b.agent.WaitDeploy(ctx, tg.app, id, timeout)
	if err != nil {
		return f, err
	}
	peak, err := b.agent.PeakRSS()
	if err != nil {
		return f, err
	}
	cpu1, err := b.agent.CPUTime()
	if err != nil {
		return f, err
	}
	return deployFigures{
		ID: id, SHA: sha,
		Seconds:    d.Finished.Sub(at).Seconds(),
		QueueSecs:  d.Started.Sub(at).Seconds(),
		FetchSecs:  d.phase("fetched").Seconds(),
		LayoutSecs: d.phase("release laid out").Seconds(),
		FetchBytes: d.FetchBytes,
		WireBytes:  b.srv.Sent() - sent,
		PeakRSS:    peak,
		CPUSecs:    (cpu1 - cpu0).Seconds(),
		Load:       load,
	}, nil
}
