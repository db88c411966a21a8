package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/pushdeploy/pushdeploy/notify"
)

// DefaultUIListen is where the status page listens when the ui section leaves listen out:
// loopback only; anything wider needs token_file or a reverse proxy.
const DefaultUIListen = "127.0.0.1:5758"

// UI is the status page (ui: in the agent's config). Without the section there is no
// status page; `ui: {}` serves it on DefaultUIListen.
type UI struct {
	Listen    string `yaml:"listen"`
	TokenFile string `yaml:"token_file"` // a read-only token the page asks for; required off loopback

	token string
}

// Token is the status page's read-only token, read from token_file ("" when none).
func (u *UI) Token() string { return u.token }

// Notify is one notification target: a Slack-compatible incoming webhook (type slack) or a
// generic JSON webhook (type webhook, the default) signed with HMAC-SHA256 when secret_file
// is set. Events are notify.Events; the default is succeeded and failed.
type Notify struct {
	URL        string   `yaml:"url"`
	Type       string   `yaml:"type"`
	SecretFile string   `yaml:"secret_file"`
	Events     []string `yaml:"events"`

	secret []byte
}

// Secret is the HMAC key read from secret_file (nil when none).
func (n *Notify) Secret() []byte { return n.secret }

func (c *Config) setUIDefaults() {
	if c.UI != nil && c.UI.Listen == "" {
		c.UI.Listen = DefaultUIListen
	}
	for _, n := range c.Notify {
		n.setDefaults()
	}
	for _, a := range c.Apps {
		for _, n := range a.Notify {
			n.setDefaults()
		}
	}
}

func (n *Notify) setDefaults() {
	if n == nil {
		return
	}
	if n.Type == "" {
		n.Type = "webhook"
	}
	if len(n.Events) == 0 {
		n.Events = []string{notify.EventSucceeded, notify.EventFailed}
	}
}

func (c *Config) validateUI() []error {
	var errs []error
	if u := c.UI; u != nil {
		host, _, err := net.SplitHostPort(u.Listen)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("ui.listen: want host:port, got %q", u.Listen))
		case !loopback(host) && u.TokenFile == "":
			errs = append(errs, fmt.Errorf("ui.listen: %q is reachable from other hosts: set ui.token_file, or listen on 127.0.0.1 behind a reverse proxy", u.Listen))
		}
		if u.TokenFile != "" {
			if tok, err := readSecret(u.TokenFile); err != nil {
				errs = append(errs, fmt.Errorf("ui.token_file: %w", err))
			} else {
				u.token = tok
			}
		}
	}
	for i, n := range c.Notify {
		errs = append(errs, n.validate(fmt.Sprintf("notify[%d]", i))...)
	}
	return errs
}

// loopback reports whether host names only this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (n *Notify) validate(field string) []error {
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{field, sub}, args...)...))
	}
	if n == nil {
		return []error{fmt.Errorf("%s: empty target: give at least url", field)}
	}
	if p, err := url.Parse(n.URL); n.URL == "" {
		bad("url", "missing: where to POST the notifications")
	} else if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		bad("url", "want an http(s) URL, got %q", redactURL(n.URL))
	}
	switch n.Type {
	case "slack", "webhook":
	default:
		bad("type", "want slack or webhook, got %q", n.Type)
	}
	for i, e := range n.Events {
		if !slices.Contains(notify.Events, e) {
			bad(fmt.Sprintf("events[%d]", i), "want one of %s, got %q", strings.Join(notify.Events, ", "), e)
		}
	}
	if n.SecretFile != "" {
		if s, err := readSecret(n.SecretFile); err != nil {
			bad("secret_file", "%v", err)
		} else {
			n.secret = []byte(s)
		}
	}
	return errs
}

// redactURL keeps a URL's scheme and host: a Slack webhook URL's path is its secret.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "<not a URL>"
	}
	return p.Scheme + "://" + p.Host + "/…"
}
