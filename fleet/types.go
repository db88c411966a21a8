package fleet

import (
	"math"
	"time"
)

// Host is a host's entry in the registry: what an operator asks of it.
type Host struct {
	Host    string          `json:"host"`
	Env     string          `json:"env"`
	Version string          `json:"version,omitempty"` // the agent's
	Started time.Time       `json:"started"`           // when the agent started
	Updated time.Time       `json:"updated"`           // when this entry was written
	Apps    map[string]*App `json:"apps"`
	// Alive is false for an entry read from seen/: the host's lease expired (it is down or
	// cannot reach etcd). Not stored.
	Alive bool `json:"-"`
}

// App is what a host runs of one app.
type App struct {
	SHA       string  `json:"sha,omitempty"`  // the current release; "" before the first deploy
	Mark      string  `json:"mark,omitempty"` // the current release's mark: good, bad or ""
	Deploy    *Deploy `json:"deploy,omitempty"`
	Last      *Deploy `json:"last,omitempty"`
	Instances int     `json:"instances"` // service instances installed for the current release
	// Unhealthy says why the app's instances are not known healthy: the error of the last
	// deploy, restart, rollback or configuration change, when it failed. Empty: the last one
	// left every instance healthy (or the app runs no services).
	Unhealthy string `json:"unhealthy,omitempty"`
}

// Deploy is a deploy under way (Deploy) or the newest finished (Last) on a host.
type Deploy struct {
	ID     string    `json:"id"`
	Kind   string    `json:"kind"`
	SHA    string    `json:"sha"`
	Status string    `json:"status"`          // its step while under way, its outcome when done
	Note   string    `json:"note,omitempty"`  // e.g. what a waiting deploy waits for
	Error  string    `json:"error,omitempty"` // first line
	Since  time.Time `json:"since"`           // queued, started, or finished
}

// Halt stops a commit's rollout: set by the host on which it failed.
type Halt struct {
	App    string    `json:"app,omitempty"` // from the key
	Env    string    `json:"env,omitempty"` // from the key
	SHA    string    `json:"sha"`
	Host   string    `json:"host"`
	Deploy string    `json:"deploy,omitempty"`
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at"`
}

// Lock stops deploys of an app in an environment until it is unlocked.
type Lock struct {
	App string    `json:"app,omitempty"` // from the key
	Env string    `json:"env,omitempty"` // from the key
	Who string    `json:"who"`
	Why string    `json:"why"`
	At  time.Time `json:"at"`
}

// String says who locked, when and why.
func (l Lock) String() string {
	s := "by " + l.Who + " since " + l.At.UTC().Format(time.RFC3339)
	if l.Why != "" {
		s += ": " + l.Why
	}
	return s
}

// Want states.
const (
	WantWaiting   = "waiting"
	WantSucceeded = "succeeded"
	WantFailed    = "failed"
)

// want is a host's wish to deploy a commit, and how it went.
type want struct {
	Host   string    `json:"host"`
	Deploy string    `json:"deploy"`
	State  string    `json:"state"`
	Since  time.Time `json:"since"`
}

// slot is a host deploying (or queued to).
type slot struct {
	Host   string    `json:"host"`
	SHA    string    `json:"sha"`
	Deploy string    `json:"deploy"`
	Since  time.Time `json:"since"`
}

// Policy is how an app's deploys are paced across the hosts of an environment.
type Policy struct {
	// MaxParallel is how many hosts deploy at once; with MaxPercent > 0 it is ignored and
	// the count is that percentage of the environment's live hosts that run the app,
	// rounded up. At least 1.
	MaxParallel int
	MaxPercent  float64
	// Canary is how many hosts deploy a commit first; the others start it only when that
	// many have deployed it successfully.
	Canary int
	// HaltOnFailure sets a halt for a commit that failed on a host: no other host starts it.
	HaltOnFailure bool
}

// Parallel resolves the policy for an environment of n hosts: at least 1.
func (p Policy) Parallel(n int) int {
	if p.MaxPercent > 0 {
		return max(1, int(math.Ceil(p.MaxPercent*float64(n)/100)))
	}
	return max(1, p.MaxParallel)
}
