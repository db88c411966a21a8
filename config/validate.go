package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/pushdeploy/pushdeploy/haproxy"
	"github.com/pushdeploy/pushdeploy/release"
)

var (
	appNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	repoRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
)

func (c *Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if !strings.Contains(c.Listen, ":") {
		bad("listen", "want host:port, got %q", c.Listen)
	}
	if c.TLS != nil {
		if !filepath.IsAbs(c.TLS.CertFile) {
			bad("tls.cert_file", "must be an absolute path, got %q", c.TLS.CertFile)
		}
		if !filepath.IsAbs(c.TLS.KeyFile) {
			bad("tls.key_file", "must be an absolute path, got %q", c.TLS.KeyFile)
		}
	}
	if !filepath.IsAbs(c.DataDir) {
		bad("data_dir", "must be an absolute path, got %q", c.DataDir)
	}
	if !filepath.IsAbs(c.AdminSocket) {
		bad("admin_socket", "must be an absolute path, got %q", c.AdminSocket)
	}
	if c.Host == "" {
		bad("host", "missing (and the hostname is unknown)")
	}
	if len(c.Environments) == 0 {
		bad("environments", "missing: list the environments this host deploys, e.g. [production]")
	}
	for i, e := range c.Environments {
		if !envRE.MatchString(e) {
			bad(fmt.Sprintf("environments[%d]", i), "want letters, digits, '.', '_' or '-', got %q", e)
		}
	}
	switch c.Systemd.Scope {
	case "system", "user":
	default:
		bad("systemd.scope", "want system or user, got %q", c.Systemd.Scope)
	}
	if !filepath.IsAbs(c.Systemd.UnitDir) {
		bad("systemd.unit_dir", "must be an absolute path, got %q", c.Systemd.UnitDir)
	}
	if c.Systemd.Settle < 0 {
		bad("systemd.settle", "must be positive, got %s", c.Systemd.Settle)
	}
	if c.HistoryLimit < 1 {
		bad("history_limit", "must be at least 1, got %d", c.HistoryLimit)
	}
	if len(c.Apps) == 0 {
		bad("apps", "missing: configure at least one app")
	}
	names := make([]string, 0, len(c.Apps))
	for name := range c.Apps {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		field := "apps." + name
		// Unit names are pushdeploy-<app>-<service>: apps a and a-b could both own
		// pushdeploy-a-b-c@.service, and one app's deploy would replace the other's units.
		for _, other := range names[:i] {
			if strings.HasPrefix(name, other+"-") {
				bad(field, "its unit names could collide with app %s's (pushdeploy-%s-…): rename one of them", other, other)
			}
		}
		if !appNameRE.MatchString(name) {
			bad(field, "app names are lowercase letters, digits, '-' and '_' (at most 63), got %q", name)
			continue
		}
		errs = append(errs, c.Apps[name].validate(field)...)
	}
	errs = append(errs, c.validateEtcd()...)
	errs = append(errs, c.validateUI()...)
	errs = append(errs, c.validateFleet()...)
	return errors.Join(errs...)
}

func (a *App) validate(field string) []error {
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{field, sub}, args...)...))
	}
	if a.Repo == "" {
		bad("repo", "missing: the GitHub repository as owner/name")
	} else if !repoRE.MatchString(a.Repo) {
		bad("repo", "want owner/name, got %q", a.Repo)
	}
	if a.Remote == "" {
		bad("remote", "missing: the URL to fetch from (ssh, https, git or file)")
	} else if proto, err := (release.Remote{URL: a.Remote}).Protocol(); err != nil {
		bad("remote", "%v", err)
	} else if proto == "ssh" && (a.SSHKeyFile == "" || a.KnownHostsFile == "") {
		bad("remote", "an ssh remote needs ssh_key_file and known_hosts_file (host keys are pinned)")
	} else if a.TokenFile != "" && proto != "https" {
		bad("token_file", "only used with an https remote, this one is %s", proto)
	}
	if a.SecretFile == "" {
		bad("secret_file", "missing: the file holding the webhook's HMAC secret")
	} else if secret, err := readSecret(a.SecretFile); err != nil {
		bad("secret_file", "%v", err)
	} else {
		a.secret = []byte(secret)
	}
	if a.TokenFile != "" {
		if token, err := readSecret(a.TokenFile); err != nil {
			bad("token_file", "%v", err)
		} else {
			a.token = token
		}
	}
	for sub, p := range map[string]string{"ssh_key_file": a.SSHKeyFile, "known_hosts_file": a.KnownHostsFile} {
		if p != "" {
			if _, err := os.Stat(p); err != nil {
				bad(sub, "%v", err)
			}
		}
	}
	if strings.Count(a.Branch, "{env}") > 1 {
		bad("branch", "use {env} at most once, got %q", a.Branch)
	} else if _, err := path.Match(strings.ReplaceAll(a.Branch, "{env}", "x"), ""); err != nil {
		bad("branch", "bad pattern %q: %v", a.Branch, err)
	}
	if a.KeepReleases < 1 {
		bad("keep_releases", "must be at least 1, got %d", a.KeepReleases)
	}
	if len(a.Script) > 0 && !filepath.IsAbs(a.Script[0]) {
		bad("script", "must start with an absolute path, got %q", a.Script[0])
	}
	if a.ScriptTimeout < 0 {
		bad("script_timeout", "must be positive, got %s", a.ScriptTimeout)
	}
	if a.FetchTimeout < 0 {
		bad("fetch_timeout", "must be positive, got %s", a.FetchTimeout)
	}
	if g := a.GitHub; g != nil {
		if g.TokenFile == "" {
			bad("github.token_file", "missing: the file holding a GitHub token allowed to write deployments")
		} else if token, err := readSecret(g.TokenFile); err != nil {
			bad("github.token_file", "%v", err)
		} else {
			g.token = token
		}
		for sub, u := range map[string]string{"github.api_url": g.APIURL, "github.public_url": g.PublicURL} {
			if u == "" {
				continue
			}
			if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
				bad(sub, "want an http(s) URL, got %q", u)
			}
		}
	}
	for i, n := range a.Notify {
		for _, err := range n.validate(fmt.Sprintf("notify[%d]", i)) {
			errs = append(errs, fmt.Errorf("%s.%w", field, err))
		}
	}
	if h := a.HAProxy; h != nil {
		if !filepath.IsAbs(h.Socket) {
			bad("haproxy.socket", "must be the absolute path of haproxy's admin socket, got %q", h.Socket)
		}
		if h.Backend == "" {
			bad("haproxy.backend", "missing: the backend that holds the app's servers")
		} else if err := haproxy.CheckName(h.Backend); err != nil {
			bad("haproxy.backend", "%v", err)
		}
		if h.Server == "" {
			bad("haproxy.server", "missing: the server name template, e.g. web{instance}")
		} else if _, err := haproxy.ServerName(h.Server, "web", 1, 3000); err != nil {
			bad("haproxy.server", "%v", err)
		}
		if h.DrainTimeout < 0 {
			bad("haproxy.drain_timeout", "must be positive, got %s", h.DrainTimeout)
		}
	}
	return errs
}

// readSecret reads a one-line secret file. Its content never appears in an error.
func readSecret(p string) (string, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", fmt.Errorf("%s is empty", p)
	}
	return s, nil
}
