package admin

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// Backend answers the admin API's requests, one method per endpoint; the running agent
// serves one, and Client is one on the CLI's side. Its errors decide the answer's code: an
// error wrapping state.ErrNotFound answers 404, one wrapping ErrNothingToDo 409, any other
// 500; the body carries the error's text.
type Backend interface {
	// Status reports every app, or only the one named.
	Status(ctx context.Context, app string) ([]AppStatus, error)
	// History returns an app's deploys, newest first, at most limit (0: all kept).
	History(ctx context.Context, app string, limit int) ([]state.Deploy, error)
	// Deploy returns one deploy of an app and its log.
	Deploy(ctx context.Context, app, id string) (*state.Deploy, []byte, error)
	// GC applies an app's release retention now.
	GC(ctx context.Context, app string) (release.GCResult, error)
	// Restart queues a rolling restart of the app's current release (of one service when
	// service is set) and returns the queued record.
	Restart(ctx context.Context, app, service string) (*state.Deploy, error)
	// Rollback queues a rollback of app to sha (a prefix), or to the previous good release
	// when sha is empty, and returns the queued record.
	Rollback(ctx context.Context, app, sha string) (*state.Deploy, error)
	// Follow emits one deploy's log lines (JSON, without their newline) from byte offset
	// from on, as they are written, until the deploy is final and its log complete, then
	// returns the final record.
	Follow(ctx context.Context, app, id string, from int64, emit func(line []byte, next int64) error) (*state.Deploy, error)
	// DeployBranch queues a deploy of the tip of app's branch (for req.Env), or of req.SHA
	// when it is that tip, through the app's queue and stale check as a push would, and
	// returns the queued record.
	DeployBranch(ctx context.Context, app string, req DeployRequest) (*state.Deploy, error)
}

// DeployRequest is what `pushdeploy deploy` asks for.
type DeployRequest struct {
	Env  string `json:"env,omitempty"`  // the environment whose branch to deploy; "" is the host's only one
	SHA  string `json:"sha,omitempty"`  // the commit expected at the branch's tip (a prefix will do); "" is whatever is there
	User string `json:"user,omitempty"` // who asked, for the record
}

// LogEntry is one item of the stream of GET /v1/apps/{app}/deploys/{id}/log?follow=1
// (JSON lines): a log line with the offset after it, then, last, the final record.
type LogEntry struct {
	Line   json.RawMessage `json:"line,omitempty"`
	Next   int64           `json:"next,omitempty"`
	Deploy *state.Deploy   `json:"deploy,omitempty"`
	Error  string          `json:"error,omitempty"` // the stream broke off: why
}

// ErrInvalid is a request that cannot be carried out as asked (a deploy for an environment
// this host does not deploy…). The API answers it with 400 Bad Request.
var ErrInvalid = errors.New("invalid request")

// ErrNothingToDo is a restart or rollback that cannot apply: no current release, no
// services, or a rollback to the release that is already current. The API answers it with
// 409 Conflict.
var ErrNothingToDo = errors.New("nothing to do")

// AppStatus is what `pushdeploy status` shows for an app.
type AppStatus struct {
	App     string           `json:"app"`
	Repo    string           `json:"repo"`
	Current *release.Release `json:"current,omitempty"`
	Active  *state.Deploy    `json:"active,omitempty"` // under way
	Queued  *state.Deploy    `json:"queued,omitempty"` // waiting
	Last    *state.Deploy    `json:"last,omitempty"`   // the newest finished
	Config  *ConfigStatus    `json:"config,omitempty"` // with etcd: the configuration in place
	Agent   bool             `json:"agent_running"`    // false when read from disk
}

// ConfigStatus is what `pushdeploy status` says of an app's configuration from etcd.
type ConfigStatus struct {
	Doc      string    `json:"doc"`               // app/env in etcd
	Rev      int64     `json:"rev,omitempty"`     // the last good configuration's revision
	Fetched  time.Time `json:"fetched,omitzero"`  // when it was read
	BadRev   int64     `json:"bad_rev,omitempty"` // a configuration reverted as unhealthy
	BadWhy   string    `json:"bad_reason,omitempty"`
	BadSince time.Time `json:"bad_at,omitzero"`
}

// deployWithLog is the answer of GET /v1/apps/{app}/deploys/{id}.
type deployWithLog struct {
	Deploy *state.Deploy `json:"deploy"`
	Log    string        `json:"log"`
}
