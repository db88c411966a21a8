package state

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Status is where a deploy is in its life.
type Status string

// The statuses a deploy goes through. The last four are final.
const (
	StatusQueued     Status = "queued"
	StatusFetching   Status = "fetching"
	StatusReleasing  Status = "releasing"
	StatusScript     Status = "running-script"
	StatusStarting   Status = "starting" // installing units, starting or restarting instances
	StatusSucceeded  Status = "succeeded"
	StatusFailed     Status = "failed"
	StatusSuperseded Status = "superseded"
	StatusStale      Status = "stale"
)

// The statuses of deploys the deploy lock or a fleet holds back.
const (
	// StatusWaiting: accepted and not started, waiting for the deploy lock to go, for the
	// canary hosts to succeed or for a fleet slot; the note says which.
	StatusWaiting Status = "waiting"
	// StatusHalted (final): not deployed because the commit failed on another host of the
	// fleet; the running release stays.
	StatusHalted Status = "halted"
)

// Final reports whether nothing more will happen to a deploy in this status.
func (s Status) Final() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusSuperseded, StatusStale, StatusHalted:
		return true
	}
	return false
}

// The kinds of deploy: what a queued record does when it runs.
const (
	KindDeploy   = "deploy"   // a pushed commit: fetch, build, roll out, switch current
	KindRestart  = "restart"  // a rolling restart of the current release, health-checked
	KindRollback = "rollback" // a rollout to a release already on disk, then switch current
	KindConfig   = "config"   // a changed configuration in etcd: new environment file, rolling restart
)

// TriggerManual is the Trigger of a deploy asked for with `pushdeploy deploy`.
const TriggerManual = "manual"

// KindReconcile is a deploy the agent queued itself: the branch points at a commit this host
// does not run (a push it missed while down or partitioned); it runs as a deploy does.
const KindReconcile = "reconcile"

// Deploy is the durable record of one deploy, restart or rollback (Kind).
type Deploy struct {
	ID       string `json:"id"`
	App      string `json:"app"`
	Kind     string `json:"kind,omitempty"`    // KindDeploy when empty (older records)
	Service  string `json:"service,omitempty"` // a restart of one service only
	SHA      string `json:"sha"`
	Branch   string `json:"branch"`
	Delivery string `json:"delivery,omitempty"`
	Pusher   string `json:"pusher,omitempty"`
	// Trigger is what queued a deploy of kind deploy: "" for a push webhook, TriggerManual
	// for `pushdeploy deploy` (Pusher is then the user who ran it).
	Trigger    string `json:"trigger,omitempty"`
	Message    string `json:"message,omitempty"`
	Status     Status `json:"status"`
	Previous   string `json:"previous,omitempty"` // the release that was current before
	Error      string `json:"error,omitempty"`
	Note       string `json:"note,omitempty"` // why it was stale or superseded, or other detail
	FetchBytes int64  `json:"fetch_bytes,omitempty"`
	// WaitedMS is how long the deploy waited for the lock, the canary hosts or a fleet slot
	// before it started: Started is when the wait ended.
	WaitedMS int64 `json:"waited_ms,omitempty"`
	// ConfigRev is the etcd revision of the configuration the deploy rolled out, and
	// ConfigSource where it came from: "etcd", or "cache" while etcd was unreachable.
	ConfigRev    int64  `json:"config_rev,omitempty"`
	ConfigSource string `json:"config_source,omitempty"`
	// ScriptPGID is the process group of the deploy's script while it runs: an agent killed
	// then cannot end it, and its next start does before the deploy runs again.
	ScriptPGID int       `json:"script_pgid,omitempty"`
	Queued     time.Time `json:"queued"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	Updated    time.Time `json:"updated"`
}

// IDs hands out deploy ids that sort in the order deploys were accepted: the time to the
// millisecond, pushed forward when two deploys share one, and a random suffix so that ids
// stay unique across restarts and hosts. The zero value is ready; one agent has one.
type IDs struct {
	mu   sync.Mutex
	last time.Time
}

// Next returns a new id for a deploy accepted at now, larger than every id it returned
// before.
func (g *IDs) Next(now time.Time) string {
	g.mu.Lock()
	now = now.UTC().Truncate(time.Millisecond)
	if !now.After(g.last) {
		now = g.last.Add(time.Millisecond)
	}
	g.last = now
	g.mu.Unlock()
	return newDeployID(now)
}

func newDeployID(t time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102-150405.000") + "-" + hex.EncodeToString(b[:])
}
