// Package agent is the pushdeploy daemon: it loads the agent configuration, answers webhooks,
// keeps one deploy queue per app where the newest push wins, runs the deploy pipeline
// (stale check, pinned fetch, release, script, switch), records every deploy durably, and
// serves the admin API the CLI talks to over a unix socket.
package agent
