package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
	"github.com/pushdeploy/pushdeploy/renv"
)

// DefaultDebounce is how long an app's configuration must stay unchanged in etcd
// before the change is rolled out: a script that sets ten keys one by one restarts the app
// once, not ten times.
const DefaultDebounce = time.Second

// Etcd is where the apps' configuration lives (etcd: in the agent's config). Without
// it the agent runs without etcd: units get no environment file.
type Etcd struct {
	Endpoints      []string      `yaml:"endpoints"`
	Prefix         string        `yaml:"prefix"`    // default renv.DefaultPrefix
	CAFile         string        `yaml:"ca_file"`   // verify etcd's certificate with this CA
	CertFile       string        `yaml:"cert_file"` // client certificate, with key_file
	KeyFile        string        `yaml:"key_file"`
	Username       string        `yaml:"username"`
	PasswordFile   string        `yaml:"password_file"`
	DialTimeout    time.Duration `yaml:"dial_timeout"`    // default 5s
	RequestTimeout time.Duration `yaml:"request_timeout"` // default 5s: one read or write
	FleetPrefix    string        `yaml:"fleet_prefix"`    // default fleet.DefaultPrefix: the registry, slots, halts, locks
	LeaseTTL       time.Duration `yaml:"lease_ttl"`       // default 10s: how long a dead host holds its slot

	password string
}

// AppEnv says which etcd document becomes the app's environment file
// (apps.<app>.config). Every app of an agent with an etcd section has one; the defaults
// fit an app whose document is named like it, on a host that deploys one environment.
type AppEnv struct {
	Name     string        `yaml:"name"`     // the document's app name in etcd; default the app's
	Env      string        `yaml:"env"`      // its environment; default the host's only one
	Debounce time.Duration `yaml:"debounce"` // quiet time before a change rolls out; default 1s
}

// Renv is the renv connection settings of the etcd section, the password read from its file.
func (e *Etcd) Renv() renv.Config {
	return renv.Config{Prefix: e.Prefix, Config: etcdconn.Config{
		Endpoints: e.Endpoints,
		CACert:    e.CAFile, Cert: e.CertFile, Key: e.KeyFile,
		Username: e.Username, Password: e.password,
		DialTimeout: e.DialTimeout, RequestTimeout: e.RequestTimeout,
	}}
}

func (c *Config) setEtcdDefaults() {
	e := c.Etcd
	if e == nil {
		return
	}
	if e.Prefix == "" {
		e.Prefix = renv.DefaultPrefix
	}
	if e.DialTimeout == 0 {
		e.DialTimeout = 5 * time.Second
	}
	if e.RequestTimeout == 0 {
		e.RequestTimeout = 5 * time.Second
	}
	for name, a := range c.Apps {
		if a == nil {
			continue
		}
		if a.Config == nil {
			a.Config = &AppEnv{}
		}
		if a.Config.Name == "" {
			a.Config.Name = name
		}
		if a.Config.Env == "" && len(c.Environments) == 1 {
			a.Config.Env = c.Environments[0]
		}
		if a.Config.Debounce == 0 {
			a.Config.Debounce = DefaultDebounce
		}
	}
}

func (c *Config) validateEtcd() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	e := c.Etcd
	if e == nil {
		for name, a := range c.Apps {
			if a != nil && a.Config != nil {
				bad("apps."+name+".config", "needs an etcd section: the configuration lives in etcd")
			}
		}
		return errs
	}
	if len(e.Endpoints) == 0 {
		bad("etcd.endpoints", "missing: etcd's client URLs, e.g. [https://127.0.0.1:2379]")
	}
	for i, ep := range e.Endpoints {
		if strings.TrimSpace(ep) == "" {
			bad(fmt.Sprintf("etcd.endpoints[%d]", i), "empty")
		}
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		bad("etcd.cert_file", "cert_file and key_file go together: set both or neither")
	}
	for field, p := range map[string]string{"etcd.ca_file": e.CAFile, "etcd.cert_file": e.CertFile, "etcd.key_file": e.KeyFile} {
		if p != "" {
			if _, err := os.Stat(p); err != nil {
				bad(field, "%v", err)
			}
		}
	}
	if e.PasswordFile != "" {
		if e.Username == "" {
			bad("etcd.password_file", "set without etcd.username")
		}
		if pw, err := readSecret(e.PasswordFile); err != nil {
			bad("etcd.password_file", "%v", err)
		} else {
			e.password = pw
		}
	}
	if e.DialTimeout < 0 {
		bad("etcd.dial_timeout", "must be positive, got %s", e.DialTimeout)
	}
	if e.RequestTimeout < 0 {
		bad("etcd.request_timeout", "must be positive, got %s", e.RequestTimeout)
	}
	if err := e.Renv().Validate(); err != nil && len(errs) == 0 {
		bad("etcd", "%v", err)
	}
	for name, a := range c.Apps {
		if a == nil || a.Config == nil {
			continue
		}
		field := "apps." + name + ".config"
		if !envRE.MatchString(a.Config.Name) {
			bad(field+".name", "want letters, digits, '.', '_' or '-', got %q", a.Config.Name)
		}
		switch {
		case a.Config.Env == "":
			bad(field+".env", "missing: this host deploys several environments (%s); say which one's configuration the app runs with", strings.Join(c.Environments, ", "))
		case !envRE.MatchString(a.Config.Env):
			bad(field+".env", "want letters, digits, '.', '_' or '-', got %q", a.Config.Env)
		}
		if a.Config.Debounce < 0 {
			bad(field+".debounce", "must be positive, got %s", a.Config.Debounce)
		}
	}
	return errs
}
