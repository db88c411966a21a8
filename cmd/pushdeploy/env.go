package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
	"github.com/pushdeploy/pushdeploy/renv"
)

// Defaults of the env commands' connection settings, the lowest layer of their precedence.
const (
	defaultEtcdEndpoint   = "http://127.0.0.1:2379"
	defaultEtcdTimeout    = 5 * time.Second
	defaultConfigEnv      = "production"
	envVarDefaultEnv      = "PUSHDEPLOY_ENV"
	envVarEtcdctlPassword = "ETCDCTL_PASSWORD"
)

const envLong = `env reads and changes the apps' configuration in etcd: one typed JSON document per app
and environment, which the agent renders into the app's environment file.

A document is named APP/ENV. Without /ENV, ENV is $PUSHDEPLOY_ENV, else the agent
configuration's only environment, else "production".

Connection settings are merged in this order, each layer overriding the ones before it:
  1. defaults: --endpoints ` + defaultEtcdEndpoint + `, --prefix ` + renv.DefaultPrefix + `, 5s timeouts
  2. the etcd section of the agent configuration (--config); a missing file at the default
     path is skipped, a file given with --config must exist, --config '' skips it
  3. ETCDCTL_ENDPOINTS, ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_USER (name or
     name:password), ETCDCTL_PASSWORD, ETCDCTL_DIAL_TIMEOUT, ETCDCTL_COMMAND_TIMEOUT
  4. the flags below
--user NAME without a password takes it from ETCDCTL_PASSWORD.

Values under the top-level key "secret" are masked in get, export and dump unless
--show-secrets is given; set and import refuse a masked value, so a masked export cannot
overwrite the secrets it hides.`

// envFlags are the connection settings every env subcommand takes.
type envFlags struct {
	endpoints, cacert, cert, key, user, prefix string
	dialTimeout, commandTimeout                time.Duration
	configPath                                 string
}

func newEnvCmd() *cobra.Command {
	f := &envFlags{}
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Read and change the apps' configuration documents in etcd",
		Long:  envLong,
	}
	f.register(cmd, renv.DefaultPrefix, "etcd key prefix of the documents")
	cmd.AddCommand(newEnvGetCmd(f), newEnvSetCmd(f), newEnvUnsetCmd(f), newEnvImportCmd(f),
		newEnvExportCmd(f), newEnvDumpCmd(f), newEnvNukeCmd(f))
	return cmd
}

// register adds the connection flags to cmd and its subcommands; --prefix is the key
// prefix of what the commands read (the documents, or the fleet's keys).
func (f *envFlags) register(cmd *cobra.Command, prefix, prefixUsage string) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.endpoints, "endpoints", defaultEtcdEndpoint, "etcd client URLs, comma-separated")
	pf.StringVar(&f.cacert, "cacert", "", "verify etcd's certificate with this CA bundle")
	pf.StringVar(&f.cert, "cert", "", "client certificate file (with --key)")
	pf.StringVar(&f.key, "key", "", "client key file (with --cert)")
	pf.StringVar(&f.user, "user", "", "etcd user as NAME or NAME:PASSWORD (password also from $ETCDCTL_PASSWORD)")
	pf.DurationVar(&f.dialTimeout, "dial-timeout", defaultEtcdTimeout, "how long to try to connect to etcd")
	pf.DurationVar(&f.commandTimeout, "command-timeout", defaultEtcdTimeout, "how long one etcd request may take")
	pf.StringVar(&f.prefix, "prefix", prefix, prefixUsage)
	pf.StringVar(&f.configPath, "config", config.DefaultPath, "agent configuration file ('' for none)")
}

// envSettings is what an env command runs with: the merged connection settings and the
// environments of the agent configuration, if there is one.
type envSettings struct {
	renv         renv.Config
	environments []string
	agent        *config.Config // nil without one
	getenv       func(string) string
}

// settings merges defaults, the agent configuration, ETCDCTL_* variables and the flags
// given, in that order, and validates the result once.
func (f *envFlags) settings(cmd *cobra.Command) (*envSettings, error) {
	s := &envSettings{getenv: os.Getenv, renv: renv.Config{Prefix: renv.DefaultPrefix, Config: etcdconn.Config{
		Endpoints:      []string{defaultEtcdEndpoint},
		DialTimeout:    defaultEtcdTimeout,
		RequestTimeout: defaultEtcdTimeout,
	}}}
	flags := cmd.Flags()
	ac, err := f.agentConfig(flags.Changed("config"))
	if err != nil {
		return nil, err
	}
	if ac != nil {
		s.agent, s.environments = ac, ac.Environments
		if ac.Etcd != nil {
			overlayRenv(&s.renv, ac.Etcd.Renv())
		}
	}
	fromEnv, err := renv.ConfigFromEnv(s.getenv)
	if err != nil {
		return nil, err
	}
	overlayRenv(&s.renv, fromEnv)

	var fromFlags renv.Config
	if flags.Changed("endpoints") {
		fromFlags.Endpoints = splitList(f.endpoints)
		if len(fromFlags.Endpoints) == 0 {
			return nil, errors.New("--endpoints: empty")
		}
	}
	if flags.Changed("cacert") {
		fromFlags.CACert = f.cacert
	}
	if flags.Changed("cert") {
		fromFlags.Cert = f.cert
	}
	if flags.Changed("key") {
		fromFlags.Key = f.key
	}
	if flags.Changed("prefix") {
		fromFlags.Prefix = f.prefix
	}
	for name, d := range map[string]time.Duration{"dial-timeout": f.dialTimeout, "command-timeout": f.commandTimeout} {
		if flags.Changed(name) && d <= 0 {
			return nil, fmt.Errorf("--%s: must be positive, got %s", name, d)
		}
	}
	if flags.Changed("dial-timeout") {
		fromFlags.DialTimeout = f.dialTimeout
	}
	if flags.Changed("command-timeout") {
		fromFlags.RequestTimeout = f.commandTimeout
	}
	overlayRenv(&s.renv, fromFlags)
	if flags.Changed("user") {
		name, password, hasPassword := strings.Cut(f.user, ":")
		if name == "" {
			return nil, errors.New("--user: want NAME or NAME:PASSWORD, the name is empty")
		}
		switch {
		case hasPassword:
		case s.getenv(envVarEtcdctlPassword) != "":
			password = s.getenv(envVarEtcdctlPassword)
		case name == s.renv.Username:
			password = s.renv.Password // the same user as a lower layer: keep its password
		}
		if password == "" { // etcd's client would not log in, and etcd would say "user name is empty"
			return nil, fmt.Errorf("--user %s: no password: give NAME:PASSWORD or set %s", name, envVarEtcdctlPassword)
		}
		s.renv.Username, s.renv.Password = name, password
	}
	if err := s.renv.Validate(); err != nil {
		return nil, fmt.Errorf("etcd settings: %w", err)
	}
	return s, nil
}

// agentConfig loads the agent configuration: nil when --config is "", or when the file at
// the default path does not exist; an error when it is broken or was named and is missing.
func (f *envFlags) agentConfig(explicit bool) (*config.Config, error) {
	if f.configPath == "" {
		return nil, nil
	}
	if !explicit {
		if _, err := os.Stat(f.configPath); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	return loadConfig(f.configPath)
}

// overlayRenv sets in dst every setting src has. A user comes with its own password.
func overlayRenv(dst *renv.Config, src renv.Config) {
	if len(src.Endpoints) > 0 {
		dst.Endpoints = src.Endpoints
	}
	for _, p := range []struct{ dst, src *string }{
		{&dst.CACert, &src.CACert}, {&dst.Cert, &src.Cert}, {&dst.Key, &src.Key}, {&dst.Prefix, &src.Prefix},
	} {
		if *p.src != "" {
			*p.dst = *p.src
		}
	}
	switch {
	case src.Username != "":
		dst.Username, dst.Password = src.Username, src.Password
	case src.Password != "":
		dst.Password = src.Password
	}
	if src.DialTimeout > 0 {
		dst.DialTimeout = src.DialTimeout
	}
	if src.RequestTimeout > 0 {
		dst.RequestTimeout = src.RequestTimeout
	}
}

func splitList(s string) []string {
	var list []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			list = append(list, e)
		}
	}
	return list
}

// envDoc names one configuration document; env "" stands for all of the app's.
type envDoc struct{ app, env string }

func (d envDoc) String() string {
	if d.env == "" {
		return d.app + "/*"
	}
	return d.app + "/" + d.env
}

// docNameRE is what an app or environment name in etcd may be, as in the agent's
// configuration (apps.<app>.config.name and .env).
var docNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// doc parses APP[/ENV]; without /ENV the environment is the default one.
func (s *envSettings) doc(arg string) (envDoc, error) {
	app, env, hasEnv := strings.Cut(arg, "/")
	if !docNameRE.MatchString(app) {
		return envDoc{}, fmt.Errorf("document %q: the app name must be letters, digits, '.', '_' or '-', starting with a letter or digit", arg)
	}
	if !hasEnv {
		var err error
		if env, err = s.defaultEnv(); err != nil {
			return envDoc{}, fmt.Errorf("document %q: %w", arg, err)
		}
	}
	if !docNameRE.MatchString(env) {
		return envDoc{}, fmt.Errorf("document %q: the environment name must be letters, digits, '.', '_' or '-', starting with a letter or digit", arg)
	}
	return envDoc{app: app, env: env}, nil
}

// defaultEnv is $PUSHDEPLOY_ENV, else the agent configuration's only environment, else
// production. An agent configuration with several environments does not pick one.
func (s *envSettings) defaultEnv() (string, error) {
	if env := s.getenv(envVarDefaultEnv); env != "" {
		return env, nil
	}
	switch len(s.environments) {
	case 0:
		return defaultConfigEnv, nil
	case 1:
		return s.environments[0], nil
	}
	return "", fmt.Errorf("this host deploys several environments (%s): write APP/ENV or set %s",
		strings.Join(s.environments, ", "), envVarDefaultEnv)
}

// open connects to etcd with the settings.
func (s *envSettings) open() (*renv.Store, error) {
	st, err := renv.Open(s.renv)
	if err != nil {
		return nil, s.explain(err)
	}
	return st, nil
}

// explain names the endpoints in an error saying etcd cannot be reached.
func (s *envSettings) explain(err error) error {
	if err == nil || !errors.Is(err, renv.ErrUnavailable) {
		return err
	}
	eps := strings.Join(s.renv.Endpoints, ", ")
	if strings.Contains(err.Error(), s.renv.Endpoints[0]) {
		return err
	}
	return fmt.Errorf("etcd at %s: %w", eps, err)
}

// envFileHeader is the header the agent writes atop an app's environment file.
func envFileHeader(d envDoc) string {
	return fmt.Sprintf("generated by pushdeploy from etcd (%s); edits are overwritten:\nchange it with `pushdeploy env set %s KEY=VALUE`", d, d)
}

// eachNamed prefixes with doc each of the errors err joins (one per line), or err.
func eachNamed(doc envDoc, err error) error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return fmt.Errorf("%s: %w", doc, err)
	}
	var errs []error
	for _, e := range joined.Unwrap() {
		errs = append(errs, fmt.Errorf("%s: %w", doc, e))
	}
	return errors.Join(errs...)
}

// withNewline ends b with exactly the newline it may lack.
func withNewline(b []byte) []byte {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return append(b, '\n')
	}
	return b
}

// maskedCount is how many values Masked hides in l.
func maskedCount(l renv.Leaves) int {
	n := 0
	for k := range l {
		if renv.IsSecret(k) {
			n++
		}
	}
	return n
}

func newEnvGetCmd(f *envFlags) *cobra.Command {
	var asJSON, asEnv, showSecrets bool
	cmd := &cobra.Command{
		Use:   "get APP[/ENV] [KEY]",
		Short: "Print a document, or one key of it",
		Long: "get prints the whole document as indented JSON ({} when empty), or with KEY (dotted: " +
			"db.host; \\. is a literal dot) that key's value: a string as raw text unless --json, " +
			"anything else as JSON. --env prints the environment file the agent would render from " +
			"the document and exits non-zero if a key cannot become a variable.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asEnv && (asJSON || len(args) == 2) {
				return errors.New("--env prints the whole document: give neither KEY nor --json")
			}
			var err error
			var path []string
			if len(args) == 2 {
				if path, err = renv.ParseKey(args[1]); err != nil {
					return err
				}
			}
			doc, leaves, err := f.readDoc(cmd, args[0])
			if err != nil {
				return err
			}
			if !showSecrets {
				leaves = leaves.Masked()
			}
			out := cmd.OutOrStdout()
			switch {
			case asEnv:
				text, err := renv.RenderEnv(leaves, envFileHeader(doc))
				if err != nil {
					return eachNamed(doc, err)
				}
				_, err = out.Write(text)
				return err
			case path == nil:
				_, err := out.Write(withNewline(leaves.Document()))
				return err
			}
			v, ok := leaves.Lookup(path)
			if !ok {
				return fmt.Errorf("%s: no key %s", doc, args[1])
			}
			var str string
			if !asJSON && len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &str) == nil {
				_, err := fmt.Fprintln(out, str)
				return err
			}
			_, err = out.Write(withNewline(v))
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a string value as JSON, quoted")
	cmd.Flags().BoolVar(&asEnv, "env", false, "print the environment file the agent would render")
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "print secret values instead of masking them")
	return cmd
}

func newEnvExportCmd(f *envFlags) *cobra.Command {
	var showSecrets bool
	cmd := &cobra.Command{
		Use:   "export APP[/ENV]",
		Short: "Print a document as JSON that import takes back",
		Long: "export prints the document as one JSON object. Secret values are masked unless " +
			"--show-secrets; import refuses a masked export, so export with --show-secrets to copy secrets.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, leaves, err := f.readDoc(cmd, args[0])
			if err != nil {
				return err
			}
			if n := maskedCount(leaves); n > 0 && !showSecrets {
				leaves = leaves.Masked()
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d secret values masked; this export cannot be imported back, export with --show-secrets for that\n", doc, n)
			}
			_, err = cmd.OutOrStdout().Write(withNewline(leaves.Document()))
			return err
		},
	}
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "export secret values instead of masking them")
	return cmd
}

func newEnvDumpCmd(f *envFlags) *cobra.Command {
	var showSecrets bool
	cmd := &cobra.Command{
		Use:   "dump",
		Short: `Print every document as {"app": {"env": {...}}}`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := f.settings(cmd)
			if err != nil {
				return err
			}
			store, err := s.open()
			if err != nil {
				return err
			}
			defer store.Close()
			all, _, err := store.Dump(cmd.Context())
			if err != nil {
				return s.explain(err)
			}
			out := make(map[string]map[string]json.RawMessage, len(all))
			masked := 0
			for app, envs := range all {
				out[app] = make(map[string]json.RawMessage, len(envs))
				for env, leaves := range envs {
					if !showSecrets {
						masked += maskedCount(leaves)
						leaves = leaves.Masked()
					}
					out[app][env] = leaves.Document()
				}
			}
			if masked > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d secret values masked; --show-secrets shows them\n", masked)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetEscapeHTML(false) // the mask is <hidden: …>, not \u003chidden
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "print secret values instead of masking them")
	return cmd
}

// openDoc is how every command on one document starts: the merged settings, the document
// named by arg, and a store to reach it (closed by the caller).
func (f *envFlags) openDoc(cmd *cobra.Command, arg string) (*envSettings, envDoc, *renv.Store, error) {
	s, err := f.settings(cmd)
	if err != nil {
		return nil, envDoc{}, nil, err
	}
	doc, err := s.doc(arg)
	if err != nil {
		return nil, envDoc{}, nil, err
	}
	store, err := s.open()
	if err != nil {
		return nil, envDoc{}, nil, err
	}
	return s, doc, store, nil
}

// readDoc reads the document named by arg, for the commands that only print it.
func (f *envFlags) readDoc(cmd *cobra.Command, arg string) (envDoc, renv.Leaves, error) {
	s, doc, store, err := f.openDoc(cmd, arg)
	if err != nil {
		return envDoc{}, nil, err
	}
	defer store.Close()
	leaves, _, err := store.Get(cmd.Context(), doc.app, doc.env)
	if err != nil {
		return envDoc{}, nil, s.explain(err)
	}
	return doc, leaves, nil
}
