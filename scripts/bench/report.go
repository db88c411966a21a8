package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything one run measured; it is also written as JSON.
type results struct {
	Date    time.Time `json:"date"`
	Seconds float64   `json:"seconds"` // the whole bench
	Machine struct {
		OS   string `json:"os"`
		Arch string `json:"arch"`
		CPUs int    `json:"cpus"`
		Go   string `json:"go"`
		Git  string `json:"git"`
		Bin  string `json:"pushdeploy"`
	} `json:"machine"`
	Repo struct {
		Files    int      `json:"files"`
		Exec     int      `json:"exec_files"`
		Symlinks int      `json:"symlinks"`
		Dirs     int      `json:"dirs"`
		Bytes    int64    `json:"bytes"`
		Commits  []string `json:"commits"`
		Changed  []string `json:"changed"` // the file each later commit rewrote
		GenSecs  float64  `json:"generate_seconds"`
	} `json:"repo"`
	Server string `json:"server"`

	FirstDeploy  deployFigures `json:"first_deploy"`
	SecondDeploy deployFigures `json:"second_deploy"`
	FirstClone   cloneResult   `json:"first_clone"`
	SecondClone  cloneResult   `json:"second_clone"`
	Disk         diskFigures   `json:"disk"`
	Large        *largeFigures `json:"large,omitempty"`
	Flood        *floodFigures `json:"flood,omitempty"`
	Webhooks     struct {
		Push loadResult `json:"push_ignored"`
		Ping loadResult `json:"ping"`
	} `json:"webhooks"`
	Notes []string `json:"notes,omitempty"`
}

// deployFigures is one deploy, webhook to succeeded.
type deployFigures struct {
	ID         string  `json:"id"`
	SHA        string  `json:"sha"`
	Seconds    float64 `json:"seconds"`        // webhook sent → finished, as recorded
	QueueSecs  float64 `json:"queued_seconds"` // webhook sent → started
	FetchSecs  float64 `json:"fetch_seconds"`  // the fetch, as the deploy logged it
	LayoutSecs float64 `json:"layout_seconds"` // laying out the release, as logged
	FetchBytes int64   `json:"fetch_bytes"`    // as the agent reports it
	WireBytes  int64   `json:"wire_bytes"`     // response bytes the git server sent meanwhile
	PeakRSS    int64   `json:"peak_rss_bytes"` // the agent's VmHWM, reset just before the webhook
	CPUSecs    float64 `json:"cpu_seconds"`    // CPU time the agent used, webhook to finish
	Load       float64 `json:"load_average"`   // the 1-minute load average at the webhook
}

// diskFigures are du-style sizes (allocated blocks, each inode once), in bytes.
type diskFigures struct {
	Releases      int   `json:"releases"`
	DataDir       int64 `json:"data_dir"`
	Objects       int64 `json:"objects"`
	Cache         int64 `json:"cache_git"`
	Rest          int64 `json:"rest"` // data dir minus objects and cache: release trees, state, logs
	CloneWorktree int64 `json:"clone_worktree"`
	CloneGitDir   int64 `json:"clone_git_dir"`
	CloneWhole    int64 `json:"clone_whole"`
}

func (r *results) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// printTable writes the figures as an aligned table, then one line per figure saying what
// exactly was measured.
func (r *results) printTable(w io.Writer) {
	fmt.Fprintf(w, "\npushdeploy bench — %d files (%d executable) + %d symlinks in %d directories, %s of incompressible data; "+
		"git http-backend on 127.0.0.1; %d CPUs, %s, %s\n\n",
		r.Repo.Files, r.Repo.Exec, r.Repo.Symlinks, r.Repo.Dirs, human(r.Repo.Bytes), r.Machine.CPUs, r.Machine.Git, r.Machine.Go)
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
	const none = "—"
	row("metric", "pushdeploy", "git clone --depth 1")
	row("------", "----------", "-------------------")
	row("1. first version: time", secs(r.FirstDeploy.Seconds), secs(r.FirstClone.Seconds))
	row("1. first version: bytes fetched (pack)", human(r.FirstDeploy.FetchBytes), human(r.FirstClone.PackBytes))
	row("1. first version: bytes on the wire", human(r.FirstDeploy.WireBytes), human(r.FirstClone.WireBytes))
	row("1. first version: CPU time", secs(r.FirstDeploy.CPUSecs), secs(r.FirstClone.CPUSecs))
	row("1. first version: peak RSS", human(r.FirstDeploy.PeakRSS), human(r.FirstClone.PeakRSS))
	row("1. first version: load average at start", load(r.FirstDeploy.Load), load(r.FirstClone.Load))
	row("2. one file changed: time", secs(r.SecondDeploy.Seconds), secs(r.SecondClone.Seconds))
	row("2. one file changed: bytes fetched (pack)", human(r.SecondDeploy.FetchBytes), human(r.SecondClone.PackBytes))
	row("2. one file changed: bytes on the wire", human(r.SecondDeploy.WireBytes), human(r.SecondClone.WireBytes))
	row("2. one file changed: CPU time", secs(r.SecondDeploy.CPUSecs), secs(r.SecondClone.CPUSecs))
	row("2. one file changed: peak RSS", human(r.SecondDeploy.PeakRSS), human(r.SecondClone.PeakRSS))
	d := r.Disk
	row(fmt.Sprintf("3. disk: %d releases vs 1 checkout", d.Releases), human(d.DataDir), human(d.CloneWhole))
	row("3.   files: objects/ vs working tree", human(d.Objects), human(d.CloneWorktree))
	row("3.   git: cache.git/ vs .git/", human(d.Cache), human(d.CloneGitDir))
	row("3.   rest: release trees, state, logs", human(d.Rest), none)
	for _, l := range []loadResult{r.Webhooks.Push, r.Webhooks.Ping} {
		name := "push, ignored branch"
		if l.Event == "ping" {
			name = "ping"
		}
		row(fmt.Sprintf("4. webhooks (%s, %d clients)", name, l.Clients), fmt.Sprintf("%.0f req/s", l.PerSec), none)
		row("4.   latency p50 / p99", fmt.Sprintf("%.2f / %.2f ms", l.P50ms, l.P99ms), none)
	}
	if l := r.Large; l != nil {
		l.rows(row, r)
	}
	if f := r.Flood; f != nil {
		f.rows(row)
	}
	tw.Flush()

	f1, f2 := r.FirstDeploy, r.SecondDeploy
	fmt.Fprintf(w, `
What was measured:
1. time: pushdeploy, from POSTing the signed push webhook to the finish the agent recorded
   (status succeeded; the release on disk with syncfs, then switched): queued %s, fetch %s,
   release layout %s, the rest ref check, switch and bookkeeping. git: wall time of
   `+"`git clone --depth 1 --branch %s`"+` into a new directory, checkout included,
   not flushed to disk (a sync right after took %s more). Every timed step starts after a sync.
   pack: the agent's fetch_bytes / the clone's .git/objects/pack. wire: HTTP response bytes
   the git server sent (ref listings included).
2. the same for the next version, one file rewritten: pushdeploy fetches into its cache
   (fetch %s, layout %s); git clones again into a fresh directory, with no cache to reuse
   (sync after: %s).
   CPU time: user and system, of the agent (/proc/<pid>/stat) from the webhook to the finish,
   and of git clone with its children (wait4); the server's git upload-pack is in neither.
   peak RSS: the agent's VmHWM (/proc/<pid>/status), reset through clear_refs just before the
   webhook; git's is wait4's ru_maxrss of git clone, the largest of it and the git processes it
   ran (index-pack, remote-http).
3. du -s style (allocated blocks, each inode counted once) of the data dir after %d deploys, each
   one file changed from the last (keep_releases: 20; every release hard-links the same objects),
   and of its objects/ and apps/%s/cache.git/; against one clone of version 1: whole, working
   tree without .git, .git alone. %d separate checkouts would take about %s.
4. %d signed deliveries per event after a warm-up, %d concurrent keep-alive clients. Each push is
   for a branch the host does not deploy: 200 ignored after verifying, parsing and recording the
   delivery durably. Each ping is verified and answered 200 ignored. Latency is per request, at
   the client.
`,
		secs(f1.QueueSecs), secs(f1.FetchSecs), secs(f1.LayoutSecs), branch, secs(r.FirstClone.SyncSecs),
		secs(f2.FetchSecs), secs(f2.LayoutSecs), secs(r.SecondClone.SyncSecs),
		d.Releases, app, d.Releases, human(int64(d.Releases)*d.CloneWorktree),
		r.Webhooks.Push.Requests, r.Webhooks.Push.Clients)
	if l := r.Large; l != nil {
		l.explain(w, r)
	}
	if f := r.Flood; f != nil {
		f.explain(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "\nwhole bench: %s (repo generated in %s)\n", secs(r.Seconds), secs(r.Repo.GenSecs))
}

// load is a 1-minute load average as the table shows it.
func load(v float64) string { return fmt.Sprintf("%.2f", v) }

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

func secs(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}
