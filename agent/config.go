package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/restart"
)

// Defaults for settings the configuration file may leave out.
const (
	DefaultConfigPath    = "/etc/pushdeploy/agent.yaml"
	DefaultListen        = ":5757"
	DefaultDataDir       = "/var/lib/pushdeploy"
	DefaultBranch        = "deploy-{env}"
	DefaultKeepReleases  = 5
	DefaultScriptTimeout = 10 * time.Minute
	DefaultHistoryLimit  = 200
	DefaultDeliveryLimit = 10000
	DefaultDrainTimeout  = 30 * time.Second
)

// Config is the agent's configuration file.
type Config struct {
	Listen       string                `yaml:"listen"`
	DataDir      string                `yaml:"data_dir"`
	Host         string                `yaml:"host"`
	Environments []string              `yaml:"environments"`
	AdminSocket  string                `yaml:"admin_socket"`
	HistoryLimit int                   `yaml:"history_limit"`
	Systemd      SystemdConfig         `yaml:"systemd"`
	Etcd         *EtcdConfig           `yaml:"etcd"`
	Apps         map[string]*AppConfig `yaml:"apps"`
}

// SystemdConfig says which systemd manager runs the apps' services.
type SystemdConfig struct {
	Scope      string        `yaml:"scope"`       // system (default) or user
	UnitDir    string        `yaml:"unit_dir"`    // default /etc/systemd/system, or the user's unit dir
	Bus        string        `yaml:"bus"`         // D-Bus address; default the system bus, or the user's session bus
	JournalDir string        `yaml:"journal_dir"` // journal files to read failures from; default the host's journal
	Settle     time.Duration `yaml:"settle"`      // how long a started instance must stay active (default 1s)
}

// Env is what the configuration's defaults depend on; only the CLI reads the environment.
type Env struct {
	Hostname   string
	UID        int
	ConfigHome string // $XDG_CONFIG_HOME, or $HOME/.config
	SessionBus string // $DBUS_SESSION_BUS_ADDRESS
}

// AppConfig is one app the agent deploys.
type AppConfig struct {
	Repo           string         `yaml:"repo"`
	Remote         string         `yaml:"remote"`
	SecretFile     string         `yaml:"secret_file"`
	AllowSHA1      bool           `yaml:"allow_sha1"`
	Branch         string         `yaml:"branch"`
	SSHKeyFile     string         `yaml:"ssh_key_file"`
	KnownHostsFile string         `yaml:"known_hosts_file"`
	TokenFile      string         `yaml:"token_file"`
	KeepReleases   int            `yaml:"keep_releases"`
	Script         Argv           `yaml:"script"`
	ScriptTimeout  time.Duration  `yaml:"script_timeout"`
	HAProxy        *HAProxyConfig `yaml:"haproxy"`
	GitHub         *GitHubConfig  `yaml:"github"`
	Config         *AppEnvConfig  `yaml:"config"`

	name   string
	secret []byte
	token  string
}

// HAProxyConfig puts an app's instances out of haproxy's rotation around their restarts:
// each instance is a server of Backend named by the Server template ({service}, {instance},
// {port}; see restart.ServerName), drained (at most DrainTimeout) before it restarts and set
// ready once it is healthy.
type HAProxyConfig struct {
	Socket       string        `yaml:"socket"`
	Backend      string        `yaml:"backend"`
	Server       string        `yaml:"server"`
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// GitHubConfig makes the agent report the app's deploys to GitHub as deployments with
// statuses. Environment is the deploy's environment, or "<env>/<host>" with
// EnvironmentPerHost; PublicURL, when set, gives each status a log_url
// "<public_url>/deploys/<id>".
type GitHubConfig struct {
	TokenFile          string `yaml:"token_file"`
	APIURL             string `yaml:"api_url"`
	EnvironmentPerHost bool   `yaml:"environment_per_host"`
	PublicURL          string `yaml:"public_url"`

	token string
}

// Argv is a command given either as one path or as a list of arguments; it is exec'd as is,
// never through a shell.
type Argv []string

// UnmarshalYAML accepts a scalar (one program, no arguments) or a sequence.
func (a *Argv) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value != "" {
			*a = Argv{n.Value}
		}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return fmt.Errorf("line %d: want a path or a list of strings", n.Line)
	}
	*a = list
	return nil
}

// LoadConfig reads the configuration file at path, fills in defaults and validates it; an
// error names the field and what was expected.
func LoadConfig(path string, env Env) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(data, env)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes, defaults and validates a configuration document. Unknown fields are
// errors: a misspelt setting must not be silently ignored.
func ParseConfig(data []byte, env Env) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	cfg.setDefaults(env)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) setDefaults(env Env) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Host == "" {
		c.Host = env.Hostname
	}
	sd := &c.Systemd
	if sd.Scope == "" {
		sd.Scope = "system"
	}
	if sd.Settle == 0 {
		sd.Settle = time.Second
	}
	switch {
	case sd.UnitDir != "":
	case sd.Scope == "system":
		sd.UnitDir = "/etc/systemd/system"
	case env.ConfigHome != "":
		sd.UnitDir = filepath.Join(env.ConfigHome, "systemd", "user")
	}
	if sd.Bus == "" && sd.Scope == "user" {
		sd.Bus = env.SessionBus
		if sd.Bus == "" {
			sd.Bus = fmt.Sprintf("unix:path=/run/user/%d/bus", env.UID)
		}
	}
	if c.AdminSocket == "" {
		c.AdminSocket = c.Layout().AdminSocket()
	}
	if c.HistoryLimit == 0 {
		c.HistoryLimit = DefaultHistoryLimit
	}
	for name, a := range c.Apps {
		if a == nil {
			a = &AppConfig{}
			c.Apps[name] = a
		}
		a.name = name
		if a.Branch == "" {
			a.Branch = DefaultBranch
		}
		if a.KeepReleases == 0 {
			a.KeepReleases = DefaultKeepReleases
		}
		if a.ScriptTimeout == 0 {
			a.ScriptTimeout = DefaultScriptTimeout
		}
		if a.HAProxy != nil && a.HAProxy.DrainTimeout == 0 {
			a.HAProxy.DrainTimeout = DefaultDrainTimeout
		}
	}
	c.setEtcdDefaults()
}

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
	return errors.Join(errs...)
}

func (a *AppConfig) validate(field string) []error {
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
	if h := a.HAProxy; h != nil {
		if !filepath.IsAbs(h.Socket) {
			bad("haproxy.socket", "must be the absolute path of haproxy's admin socket, got %q", h.Socket)
		}
		if h.Backend == "" {
			bad("haproxy.backend", "missing: the backend that holds the app's servers")
		} else if err := restart.CheckName(h.Backend); err != nil {
			bad("haproxy.backend", "%v", err)
		}
		if h.Server == "" {
			bad("haproxy.server", "missing: the server name template, e.g. web{instance}")
		} else if _, err := restart.ServerName(h.Server, "web", 1, 3000); err != nil {
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

// Layout is the data directory's layout: where under data_dir each thing lives.
func (c *Config) Layout() datadir.Layout { return datadir.Layout{Root: c.DataDir} }

// Branches returns the branch patterns this host deploys for the app, one per environment.
func (a *AppConfig) Branches(envs []string) []string {
	if !strings.Contains(a.Branch, "{env}") {
		return []string{a.Branch}
	}
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = strings.ReplaceAll(a.Branch, "{env}", e)
	}
	return out
}

// Deploys reports whether this host deploys branch for the app.
func (a *AppConfig) Deploys(envs []string, branch string) bool {
	for _, pattern := range a.Branches(envs) {
		if ok, _ := path.Match(pattern, branch); ok {
			return true
		}
	}
	return false
}

// remote is the release.Remote the app fetches from.
func (a *AppConfig) remote() release.Remote {
	return release.Remote{URL: a.Remote, SSHKeyFile: a.SSHKeyFile, KnownHostsFile: a.KnownHostsFile, Token: a.token}
}
