package notify

import (
	"fmt"
	"strings"
	"time"
)

// SlackText is the one-line text a Slack-compatible target gets for ev, e.g.
// "✅ web on web-1: deploy of 1a2b3c4d5e6f (deploy-production) succeeded in 4.2s · log".
func SlackText(ev *Event) string {
	icon := map[string]string{
		EventStarted: "🚀", EventSucceeded: "✅", EventFailed: "❌",
		EventReverted: "↩️", EventHalted: "⛔", EventConfigReverted: "↩️",
	}[ev.Event]
	what := ev.Kind
	if ev.SHA != "" {
		what += " of " + short(ev.SHA)
	}
	if ev.Branch != "" {
		what += " (" + ev.Branch + ")"
	}
	verb := map[string]string{
		EventStarted: "started", EventSucceeded: "succeeded", EventFailed: "failed",
		EventReverted: "failed and was reverted", EventHalted: "failed and halted",
		EventConfigReverted: "failed: configuration reverted",
	}[ev.Event]
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s on %s: %s %s", icon, slackEscape(ev.App), slackEscape(ev.Host), slackEscape(what), verb)
	if ev.Took > 0 {
		fmt.Fprintf(&b, " in %s", (time.Duration(ev.Took * float64(time.Second))).Round(100*time.Millisecond))
	}
	if ev.Error != "" {
		fmt.Fprintf(&b, ": %s", slackEscape(ev.Error))
	}
	if ev.URL != "" {
		fmt.Fprintf(&b, " · <%s|log>", ev.URL)
	} else {
		fmt.Fprintf(&b, " · %s", ev.Deploy)
	}
	return b.String()
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// slackEscape escapes what Slack's mrkdwn treats as control characters.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
