package fleet

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// HostLine is one host's line in a fleet's status.
type HostLine struct {
	Host  string    `json:"host"`
	Alive bool      `json:"alive"`
	SHA   string    `json:"sha,omitempty"`
	Mark  string    `json:"mark,omitempty"`
	State string    `json:"state"` // unreachable, a deploy's step, or the last deploy's outcome
	Note  string    `json:"note,omitempty"`
	Since time.Time `json:"since,omitzero"`
	App   *App      `json:"detail,omitempty"`
}

// Summary is one app in one environment across its hosts.
type Summary struct {
	App    string `json:"app"`
	Env    string `json:"env"`
	Target string `json:"target,omitempty"` // the commit last deployed anywhere: what the fleet converges on
	Hosts  int    `json:"hosts"`
	// OnTarget hosts run Target; Deploying hosts have a deploy under way (Waiting of them
	// wait for a slot, the canaries or the lock); Failed and Halted hosts' last deploy of
	// Target failed or was halted; Unreachable hosts' leases expired.
	OnTarget    int        `json:"on_target"`
	Deploying   int        `json:"deploying"`
	Waiting     int        `json:"waiting"`
	Failed      int        `json:"failed"`
	Halted      int        `json:"halted"`
	Unreachable int        `json:"unreachable"`
	Lines       []HostLine `json:"hosts_detail"`
	Halts       []Halt     `json:"halts,omitempty"`
	Lock        *Lock      `json:"lock,omitempty"`
	Slots       []string   `json:"slots,omitempty"` // hosts holding or queued for a slot, in order
}

// Converged reports whether every host runs Target and nothing is under way.
func (s Summary) Converged() bool {
	return s.Hosts > 0 && s.OnTarget == s.Hosts && s.Deploying == 0
}

// String is the summary line: "converged on abc1234 (5 hosts)" or "3 of 5 hosts on
// abc1234, 1 deploying, 1 failed, 1 unreachable".
func (s Summary) String() string {
	if s.Hosts == 0 {
		return "no hosts"
	}
	if s.Converged() {
		return fmt.Sprintf("converged on %s (%d hosts)", short(s.Target), s.Hosts)
	}
	parts := []string{fmt.Sprintf("%d of %d hosts on %s", s.OnTarget, s.Hosts, orDash(short(s.Target)))}
	for _, c := range []struct {
		n    int
		what string
	}{{s.Deploying - s.Waiting, "deploying"}, {s.Waiting, "waiting"}, {s.Failed, "failed"}, {s.Halted, "halted"}, {s.Unreachable, "unreachable"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	return strings.Join(parts, ", ")
}

// Summarize sums up app in env. The target is the commit of the most recent deploy on any
// host that was not skipped (stale, superseded), else the commit most hosts run.
func (snap *Snapshot) Summarize(app, env string) Summary {
	sum := Summary{App: app, Env: env, Slots: snap.Slots[app+"/"+env]}
	var newest time.Time
	count := map[string]int{}
	var hosts []*Host
	for _, h := range snap.Hosts {
		a := h.Apps[app]
		if h.Env != env || a == nil {
			continue
		}
		hosts = append(hosts, h)
		count[a.SHA]++
		for _, d := range []*Deploy{a.Deploy, a.Last} {
			if d != nil && d.SHA != "" && d.Status != "stale" && d.Status != "superseded" && d.Since.After(newest) {
				newest, sum.Target = d.Since, d.SHA
			}
		}
	}
	if sum.Target == "" {
		best := 0
		for sha, n := range count {
			if n > best || n == best && sha < sum.Target {
				best, sum.Target = n, sha
			}
		}
	}
	sum.Hosts = len(hosts)
	for _, h := range hosts {
		a := h.Apps[app]
		line := lineOf(h, a, sum.Target)
		// A failure counts when it is this rollout's, not an older commit's.
		thisRollout := a.Deploy == nil && a.Last != nil && a.Last.SHA == sum.Target
		switch {
		case !h.Alive:
			sum.Unreachable++
		case thisRollout && line.State == "halted":
			sum.Halted++
		case thisRollout && line.State == "failed":
			sum.Failed++
		}
		if d := a.Deploy; h.Alive && d != nil {
			sum.Deploying++
			if d.Status == "waiting" || d.Status == "queued" {
				sum.Waiting++
			}
		}
		if h.Alive && line.SHA == sum.Target {
			sum.OnTarget++
		}
		sum.Lines = append(sum.Lines, line)
	}
	for _, hl := range snap.Halts {
		if hl.App == app && hl.Env == env {
			sum.Halts = append(sum.Halts, hl)
		}
	}
	for i := range snap.Locks {
		if l := snap.Locks[i]; l.App == app && l.Env == env {
			sum.Lock = &l
		}
	}
	return sum
}

func lineOf(h *Host, a *App, target string) HostLine {
	line := HostLine{Host: h.Host, Alive: h.Alive, SHA: a.SHA, Mark: a.Mark, App: a, Since: h.Updated}
	switch {
	case !h.Alive:
		line.State = "unreachable"
	case a.Deploy != nil:
		line.State, line.Note, line.Since = a.Deploy.Status, a.Deploy.Note, a.Deploy.Since
		if a.Deploy.SHA != a.SHA {
			line.Note = strings.TrimSpace(a.Deploy.Kind + " " + short(a.Deploy.SHA) + " " + line.Note)
		}
	case a.Last != nil:
		line.State, line.Since = a.Last.Status, a.Last.Since
		if a.Last.SHA != a.SHA {
			line.Note = a.Last.Kind + " " + short(a.Last.SHA)
		}
		if a.Last.Error != "" {
			line.Note = strings.TrimSpace(line.Note + ": " + a.Last.Error)
		} else if a.Last.Note != "" && a.Last.SHA != target {
			line.Note = strings.TrimSpace(line.Note + " " + a.Last.Note)
		}
	default:
		line.State = "idle"
	}
	if a.Unhealthy != "" && line.Note == "" {
		line.Note = "unhealthy: " + a.Unhealthy
	}
	return line
}

// Apps lists the app/env pairs the snapshot knows, sorted.
func (snap *Snapshot) Apps() [][2]string {
	seen := map[[2]string]bool{}
	for _, h := range snap.Hosts {
		for app := range h.Apps {
			seen[[2]string{app, h.Env}] = true
		}
	}
	out := make([][2]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i][0] < out[j][0] || out[i][0] == out[j][0] && out[i][1] < out[j][1]
	})
	return out
}
