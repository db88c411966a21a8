package config

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/release"
)

// Defaults for settings the configuration file may leave out, and where the file is.
const (
	DefaultPath          = "/etc/pushdeploy/agent.yaml"
	DefaultListen        = ":5757"
	DefaultDataDir       = "/var/lib/pushdeploy"
	DefaultBranch        = "deploy-{env}"
	DefaultKeepReleases  = 5
	DefaultScriptTimeout = 10 * time.Minute
	DefaultHistoryLimit  = 200
	DefaultDrainTimeout  = 30 * time.Second
	DefaultFetchTimeout  = release.DefaultTimeout
)

// Config is the agent's configuration file.
type Config struct {
	Listen       string          `yaml:"listen"`
	TLS          *TLS            `yaml:"tls"`
	DataDir      string          `yaml:"data_dir"`
	Host         string          `yaml:"host"`
	Environments []string        `yaml:"environments"`
	AdminSocket  string          `yaml:"admin_socket"`
	HistoryLimit int             `yaml:"history_limit"`
	Systemd      Systemd         `yaml:"systemd"`
	Etcd         *Etcd           `yaml:"etcd"`
	UI           *UI             `yaml:"ui"`     // the status page; none without the section
	Notify       []*Notify       `yaml:"notify"` // notification targets for every app's deploys
	Apps         map[string]*App `yaml:"apps"`
	// ReconcileInterval is how often the agent checks that it runs what each app's branch
	// points at, and catches up when it does not (default 3m).
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
}

// TLS makes the webhook listener serve HTTPS with a certificate and key in PEM files. The
// agent reads them again when they change (a renewal needs no restart).
type TLS struct {
	CertFile string `yaml:"cert_file"` // the certificate chain, leaf first
	KeyFile  string `yaml:"key_file"`
}

// Systemd says which systemd manager runs the apps' services.
type Systemd struct {
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

// App is one app the agent deploys.
type App struct {
	Repo           string        `yaml:"repo"`
	Remote         string        `yaml:"remote"`
	SecretFile     string        `yaml:"secret_file"`
	AllowSHA1      bool          `yaml:"allow_sha1"`
	Branch         string        `yaml:"branch"`
	SSHKeyFile     string        `yaml:"ssh_key_file"`
	KnownHostsFile string        `yaml:"known_hosts_file"`
	TokenFile      string        `yaml:"token_file"`
	KeepReleases   int           `yaml:"keep_releases"`
	Script         Argv          `yaml:"script"`
	ScriptTimeout  time.Duration `yaml:"script_timeout"`
	// FetchTimeout bounds each exchange with the remote: the ls-remote before a fetch, the
	// fetch, a promote's push (default 10m).
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	HAProxy      *HAProxy      `yaml:"haproxy"`
	GitHub       *GitHub       `yaml:"github"`
	Config       *AppEnv       `yaml:"config"`
	Notify       []*Notify     `yaml:"notify"` // this app's notification targets, besides the global ones
	Fleet        *Fleet        `yaml:"fleet"`

	name   string
	secret []byte
	token  string
}

// HAProxy puts an app's instances out of haproxy's rotation around their restarts:
// each instance is a server of Backend named by the Server template ({service}, {instance},
// {port}; see haproxy.ServerName), drained (at most DrainTimeout) before it restarts and set
// ready once it is healthy.
type HAProxy struct {
	Socket       string        `yaml:"socket"`
	Backend      string        `yaml:"backend"`
	Server       string        `yaml:"server"`
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// GitHub makes the agent report the app's deploys to GitHub as deployments with
// statuses. Environment is the deploy's environment, or "<env>/<host>" with
// EnvironmentPerHost; PublicURL, when set, gives each status a log_url
// "<public_url>/deploys/<id>".
type GitHub struct {
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

// Load reads the configuration file at path, fills in defaults and validates it; an
// error names the field and what was expected.
func Load(path string, env Env) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data, env)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes, defaults and validates a configuration document. Unknown fields are
// errors: a misspelt setting must not be silently ignored.
func Parse(data []byte, env Env) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("parse: %w", pathErrors(data, err))
	}
	if err := cfg.Complete(env); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Complete fills in the defaults of every setting c leaves out, then validates c and reads
// the secret files it names. Parse calls it on what it decoded; a Config built in code
// (a test's) calls it itself. The error names every field that is wrong, all at once.
func (c *Config) Complete(env Env) error {
	c.setDefaults(env)
	return c.validate()
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
			a = &App{}
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
		if a.FetchTimeout == 0 {
			a.FetchTimeout = DefaultFetchTimeout
		}
		if a.HAProxy != nil && a.HAProxy.DrainTimeout == 0 {
			a.HAProxy.DrainTimeout = DefaultDrainTimeout
		}
	}
	c.setEtcdDefaults()
	c.setUIDefaults()
	c.setFleetDefaults()
}

// Layout is the data directory's layout: where under data_dir each thing lives.
func (c *Config) Layout() datadir.Layout { return datadir.Layout{Root: c.DataDir} }

// Branches returns the branch patterns this host deploys for the app, one per environment.
func (a *App) Branches(envs []string) []string {
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
func (a *App) Deploys(envs []string, branch string) bool {
	for _, pattern := range a.Branches(envs) {
		if ok, _ := path.Match(pattern, branch); ok {
			return true
		}
	}
	return false
}

// Name is the app's name: its key under apps.
func (a *App) Name() string { return a.name }

// Secret is the webhook's HMAC secret, read from secret_file.
func (a *App) Secret() []byte { return a.secret }

// Origin is where the app's commits are fetched from: remote, with the credentials its
// settings name (an https token read from token_file).
func (a *App) Origin() release.Remote {
	return release.Remote{URL: a.Remote, SSHKeyFile: a.SSHKeyFile, KnownHostsFile: a.KnownHostsFile, Token: a.token,
		Timeout: a.FetchTimeout}
}

// Token is the GitHub token read from token_file.
func (g *GitHub) Token() string { return g.token }
