package agent

import (
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/notify"
	"github.com/pushdeploy/pushdeploy/state"
)

// What a deploy's log can say of its failure (outcomes), as notification events.
const (
	notifyReverted = notify.EventReverted
	notifyHalted   = notify.EventHalted
)

// notifyTargets are the configured targets: the global ones for every app, each app's for
// its own.
func notifyTargets(cfg *config.Config) []notify.Target {
	var out []notify.Target
	add := func(n *config.Notify, apps []string) {
		if n != nil {
			out = append(out, notify.Target{URL: n.URL, Slack: n.Type == "slack", Secret: n.Secret(), Events: n.Events, Apps: apps})
		}
	}
	for _, n := range cfg.Notify {
		add(n, nil)
	}
	for name, ac := range cfg.Apps {
		for _, n := range ac.Notify {
			add(n, []string{name})
		}
	}
	return out
}

// event is the notification of d, as event.
func (a *Agent) event(d *state.Deploy, event string) notify.Event {
	ev := notify.Event{Event: event, App: d.App, Host: a.cfg.Host, Deploy: d.ID, Kind: d.Kind, SHA: d.SHA,
		Previous: d.Previous, Branch: d.Branch, Status: string(d.Status), Error: abbrev.FirstLine(d.Error), Time: time.Now().UTC()}
	if ev.Kind == "" {
		ev.Kind = state.KindDeploy
	}
	if !d.Finished.IsZero() && !d.Started.IsZero() {
		ev.Took = d.Finished.Sub(d.Started).Seconds()
	}
	if ac := a.cfg.Apps[d.App]; ac != nil && ac.GitHub != nil && ac.GitHub.PublicURL != "" {
		ev.URL = strings.TrimSuffix(ac.GitHub.PublicURL, "/") + "/deploys/" + d.ID
	}
	return ev
}

// announceStart tells the targets that d started.
func (a *Agent) announceStart(d *state.Deploy) {
	if a.view.notifier != nil {
		a.view.notifier.Send(a.event(d, notify.EventStarted))
	}
}

// announceEnd tells the targets how d ended, and counts it: succeeded, or failed, reverted,
// halted or config_reverted as its log said. A deploy that did not run to an end (queued
// again at shutdown, stale, superseded) is not announced.
func (a *Agent) announceEnd(d *state.Deploy) {
	event := endEvent(d, a.view.outcomes.take(d.ID))
	switch event {
	case "":
		return
	case notify.EventSucceeded:
		a.metrics.ops.lastSuccess.WithLabelValues(d.App).Set(float64(d.Finished.Unix()))
	case notify.EventReverted, notify.EventConfigReverted:
		a.metrics.ops.reverted.WithLabelValues(d.App, d.Kind).Inc()
	case notify.EventHalted:
		a.metrics.ops.halted.WithLabelValues(d.App).Inc()
	}
	if a.view.notifier != nil {
		a.view.notifier.Send(a.event(d, event))
	}
}

// endEvent is the event of d's end, given what its log said of its rollout (outcomes):
// "" when it did not run to an end.
func endEvent(d *state.Deploy, what string) string {
	switch {
	case d.Status == state.StatusSucceeded:
		return notify.EventSucceeded
	case d.Status != state.StatusFailed:
		return ""
	case what == notifyReverted && d.Kind == state.KindConfig:
		return notify.EventConfigReverted
	case what != "":
		return what
	}
	return notify.EventFailed
}
