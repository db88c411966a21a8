package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("top-secret\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	base := func(app string) string {
		return "data_dir: " + dir + "\nenvironments: [production]\napps:\n  web:\n    repo: acme/web\n    secret_file: " + secret + "\n" + app
	}
	// etcd is base with an etcd section (its settings indented under it) and app settings.
	etcd := func(section, app string) string {
		return "etcd:\n  " + section + "\n" + base("    remote: https://x/y.git\n"+app)
	}
	tests := []struct {
		name    string
		doc     string
		wantErr string // "" for valid
	}{
		{"minimal", base("    remote: https://github.com/acme/web.git\n"), ""},
		{"file remote and script list", base("    remote: file:///srv/git/web.git\n    script: [/usr/bin/make, -C, x]\n"), ""},
		{"missing remote", base(""), "apps.web.remote: missing"},
		{"ssh without pinned host keys", base("    remote: git@github.com:acme/web.git\n"), "apps.web.remote: an ssh remote needs ssh_key_file and known_hosts_file"},
		{"bad repo", strings.Replace(base("    remote: https://x/y.git\n"), "acme/web", "acme", 1), "apps.web.repo: want owner/name"},
		{"empty secret", strings.Replace(base("    remote: https://x/y.git\n"), secret, empty, 1), "apps.web.secret_file:"},
		{"missing secret file", strings.Replace(base("    remote: https://x/y.git\n"), secret, dir+"/nope", 1), "apps.web.secret_file:"},
		{"unknown field", base("    remote: https://x/y.git\n    keep_release: 3\n"), "apps.web.keep_release: unknown field"},
		{"relative script", base("    remote: https://x/y.git\n    script: deploy.sh\n"), "apps.web.script: must start with an absolute path"},
		{"keep releases", base("    remote: https://x/y.git\n    keep_releases: -1\n"), "apps.web.keep_releases: must be at least 1"},
		{"token with ssh", base("    remote: git://x/y.git\n    token_file: " + secret + "\n"), "apps.web.token_file: only used with an https remote"},
		{"no environments", strings.Replace(base("    remote: https://x/y.git\n"), "environments: [production]\n", "", 1), "environments: missing"},
		{"bad environment", strings.Replace(base("    remote: https://x/y.git\n"), "[production]", "[\"pro duction\"]", 1), "environments[0]:"},
		{"relative data dir", strings.Replace(base("    remote: https://x/y.git\n"), "data_dir: "+dir, "data_dir: data", 1), "data_dir: must be an absolute path"},
		{"bad app name", strings.Replace(base("    remote: https://x/y.git\n"), "  web:", "  Web!:", 1), "apps.Web!:"},
		{"colliding unit names", strings.Replace(base("    remote: https://x/y.git\n"), "apps:\n", "apps:\n  web-api:\n    repo: acme/api\n    remote: https://x/y.git\n    secret_file: "+secret+"\n", 1), "apps.web-api: its unit names could collide with app web's"},
		{"haproxy", base("    remote: https://x/y.git\n    haproxy: {socket: /run/haproxy/admin.sock, backend: web, server: \"web{instance}\", drain_timeout: 10s}\n"), ""},
		{"haproxy relative socket", base("    remote: https://x/y.git\n    haproxy: {socket: admin.sock, backend: web, server: \"web{instance}\"}\n"), "apps.web.haproxy.socket: must be the absolute path"},
		{"haproxy bad backend", base("    remote: https://x/y.git\n    haproxy: {socket: /a.sock, backend: \"we b\", server: \"web{instance}\"}\n"), "apps.web.haproxy.backend:"},
		{"haproxy no server", base("    remote: https://x/y.git\n    haproxy: {socket: /a.sock, backend: web}\n"), "apps.web.haproxy.server: missing"},
		{"haproxy bad placeholder", base("    remote: https://x/y.git\n    haproxy: {socket: /a.sock, backend: web, server: \"web{n}\"}\n"), "apps.web.haproxy.server: haproxy server name template \"web{n}\": unknown placeholder {n}"},
		{"fetch timeout", base("    remote: https://x/y.git\n    fetch_timeout: 2m\n"), ""},
		{"negative fetch timeout", base("    remote: https://x/y.git\n    fetch_timeout: -1s\n"), "apps.web.fetch_timeout: must be positive, got -1s"},
		{"haproxy negative drain", base("    remote: https://x/y.git\n    haproxy: {socket: /a.sock, backend: web, server: \"web{instance}\", drain_timeout: -1s}\n"), "apps.web.haproxy.drain_timeout: must be positive"},
		{"github", base("    remote: https://x/y.git\n    github: {token_file: " + secret + ", api_url: \"https://ghe.example.com\", environment_per_host: true, public_url: \"https://deploy.example.com\"}\n"), ""},
		{"github no token", base("    remote: https://x/y.git\n    github: {environment_per_host: true}\n"), "apps.web.github.token_file: missing"},
		{"github empty token", base("    remote: https://x/y.git\n    github: {token_file: " + empty + "}\n"), "apps.web.github.token_file:"},
		{"github bad public url", base("    remote: https://x/y.git\n    github: {token_file: " + secret + ", public_url: \"deploy.example.com\"}\n"), "apps.web.github.public_url: want an http(s) URL"},
		{"bad branch pattern", base("    remote: https://x/y.git\n    branch: \"deploy-[\"\n"), "apps.web.branch: bad pattern"},
		{"etcd", etcd("endpoints: [\"https://127.0.0.1:2379\"]\n  dial_timeout: 2s", ""), ""},
		{"etcd app config", etcd("endpoints: [\"http://127.0.0.1:2379\"]", "    config: {name: website, debounce: 5s}\n"), ""},
		{"etcd no endpoints", etcd("prefix: /x/", ""), "etcd.endpoints: missing"},
		{"etcd cert without key", etcd("endpoints: [\"http://e:2379\"]\n  cert_file: "+secret, ""), "etcd.cert_file: cert_file and key_file go together"},
		{"etcd missing ca", etcd("endpoints: [\"http://e:2379\"]\n  ca_file: "+dir+"/nope.pem", ""), "etcd.ca_file:"},
		{"etcd password without user", etcd("endpoints: [\"http://e:2379\"]\n  password_file: "+secret, ""), "etcd.password_file: set without etcd.username"},
		{"etcd bad doc name", etcd("endpoints: [\"http://e:2379\"]", "    config: {name: \"a/b\"}\n"), "apps.web.config.name: want letters"},
		{"etcd several environments", strings.Replace(etcd("endpoints: [\"http://e:2379\"]", ""), "[production]", "[production, staging]", 1), "apps.web.config.env: missing: this host deploys several environments (production, staging)"},
		{"config without etcd", base("    remote: https://x/y.git\n    config: {env: production}\n"), "apps.web.config: needs an etcd section"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.doc), Env{Hostname: "host-1"})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if cfg.Host != "host-1" || cfg.Listen != DefaultListen || cfg.Apps["web"].KeepReleases != DefaultKeepReleases {
					t.Errorf("defaults not applied: host %q listen %q keep %d", cfg.Host, cfg.Listen, cfg.Apps["web"].KeepReleases)
				}
				want := DefaultFetchTimeout
				if strings.Contains(tt.doc, "fetch_timeout: 2m") {
					want = 2 * time.Minute
				}
				if got := cfg.Apps["web"].Origin().Timeout; got != want {
					t.Errorf("the remote's timeout: got %s, want %s", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "top-secret") {
				t.Errorf("error reveals the secret: %v", err)
			}
		})
	}
}

func TestApp_Deploys(t *testing.T) {
	tests := []struct {
		pattern string
		envs    []string
		branch  string
		want    bool
	}{
		{"deploy-{env}", []string{"production"}, "deploy-production", true},
		{"deploy-{env}", []string{"production"}, "deploy-staging", false},
		{"deploy-{env}", []string{"staging", "production"}, "deploy-staging", true},
		{"deploy-{env}", []string{"production"}, "main", false},
		{"release/*", []string{"production"}, "release/v1", true},
		{"release/*", []string{"production"}, "release/v1/x", false},
	}
	for _, tt := range tests {
		a := &App{Branch: tt.pattern}
		if got := a.Deploys(tt.envs, tt.branch); got != tt.want {
			t.Errorf("%s with %v deploys %s: got %v, want %v", tt.pattern, tt.envs, tt.branch, got, tt.want)
		}
	}
}
