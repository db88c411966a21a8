package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/renv"
)

// envCLI runs `pushdeploy env` in-process against one etcd, with the caller's environment
// variables cleared so that only what a test sets counts.
type envCLI struct {
	t     *testing.T
	flags []string // connection flags appended to every command
}

func newEnvCLI(t *testing.T, flags ...string) *envCLI {
	t.Helper()
	for _, v := range []string{"ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY",
		"ETCDCTL_USER", "ETCDCTL_PASSWORD", "ETCDCTL_DIAL_TIMEOUT", "ETCDCTL_COMMAND_TIMEOUT", "PUSHDEPLOY_ENV"} {
		t.Setenv(v, "")
	}
	return &envCLI{t: t, flags: flags}
}

// etcdCLI is an envCLI for a fresh etcd, without an agent configuration.
func etcdCLI(t *testing.T) *envCLI {
	t.Helper()
	etcd := testenv.StartEtcd(t)
	return newEnvCLI(t, "--config=", "--endpoints", strings.Join(etcd.Endpoints, ","))
}

// run runs `pushdeploy env args… flags…` with stdin and returns what it printed.
func (c *envCLI) run(stdin string, args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(append(append([]string{"env"}, c.flags...), args...)) // args' flags win
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

// ok runs the command and returns its stdout, failing the test on an error.
func (c *envCLI) ok(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run("", args...)
	if err != nil {
		c.t.Fatalf("env %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// fails runs the command and returns its error, failing the test when there is none.
func (c *envCLI) fails(args ...string) error {
	c.t.Helper()
	out, _, err := c.run("", args...)
	if err == nil {
		c.t.Fatalf("env %s: no error, want one; printed:\n%s", strings.Join(args, " "), out)
	}
	return err
}

// wantErr fails the test unless err's message contains every one of wants.
func wantErr(t *testing.T, what string, err error, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("%s: got error %v, want one containing %q", what, err, w)
		}
	}
}

// deadEndpoint is the URL of a 127.0.0.1 port nothing listens on.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

func TestEnvSetGet_types(t *testing.T) {
	c := etcdCLI(t)
	if got := c.ok("get", "web/production"); strings.TrimSpace(got) != "{}" {
		t.Errorf("get of an empty document: got %q, want {}", got)
	}
	out := c.ok("set", "web/production", "n=42", "f=1.10", "b=true", "z=null", "t=--string",
		`arr=[1,[2,{"x":3}]]`, "u=日本", "empty=", "url=a=b", `q="42"`, `o={}`)
	if !strings.HasPrefix(out, "web/production: set n, f, b, z, t, arr, u, empty, url, q, o (revision ") {
		t.Errorf("set printed %q", out)
	}
	if out := c.ok("set", "--string", "web/production", "s=42", "sb=true"); !strings.Contains(out, "web/production: set s, sb") {
		t.Errorf("set --string printed %q", out)
	}
	tests := []struct {
		key, raw, json string
	}{
		{"n", "42", "42"},
		{"f", "1.10", "1.10"},
		{"b", "true", "true"},
		{"z", "null", "null"},
		{"t", "--string", `"--string"`},
		{"s", "42", `"42"`},
		{"sb", "true", `"true"`},
		{"q", "42", `"42"`},
		{"arr", `[1,[2,{"x":3}]]`, `[1,[2,{"x":3}]]`},
		{"u", "日本", `"日本"`},
		{"empty", "", `""`},
		{"url", "a=b", `"a=b"`},
		{"o", "{}", "{}"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := c.ok("get", "web/production", tt.key); got != tt.raw+"\n" {
				t.Errorf("get %s: got %q, want %q", tt.key, got, tt.raw+"\n")
			}
			if got := c.ok("get", "web/production", tt.key, "--json"); compactJSON(t, got) != tt.json {
				t.Errorf("get %s --json: got %q, want %s", tt.key, got, tt.json)
			}
		})
	}
	var doc map[string]any
	dec := json.NewDecoder(strings.NewReader(c.ok("get", "web/production")))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("get prints no JSON object: %v", err)
	}
	if len(doc) != len(tests) || doc["f"] != json.Number("1.10") || doc["sb"] != "true" {
		t.Errorf("get printed %v, want the %d keys set", doc, len(tests))
	}
	if out := c.ok("set", "web/production", "n=42", "url=a=b"); out != "web/production: unchanged\n" {
		t.Errorf("set of the same values printed %q, want unchanged", out)
	}
}

func compactJSON(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("not JSON: %q: %v", s, err)
	}
	return b.String()
}

func TestEnvSet_nesting(t *testing.T) {
	c := etcdCLI(t)
	c.ok("set", "api/staging", "db.host=db1", "db.port=5432", `a\.b=dot`, "flag=1")
	if got := compactJSON(t, c.ok("get", "api/staging", "db")); got != `{"host":"db1","port":5432}` {
		t.Errorf("get db: got %s", got)
	}
	if got := c.ok("get", "api/staging", "db.port"); got != "5432\n" {
		t.Errorf("get db.port: got %q", got)
	}
	if got := c.ok("get", "api/staging", `a\.b`); got != "dot\n" {
		t.Errorf(`get a\.b: got %q`, got)
	}
	if got := compactJSON(t, c.ok("get", "api/staging")); got != `{"a.b":"dot","db":{"host":"db1","port":5432},"flag":1}` {
		t.Errorf("get: got %s", got)
	}
	// An object value nests, replacing the subtree; so does a leaf where a subtree was.
	c.ok("set", "api/staging", `db={"host":"db2","user":"app"}`)
	if got := compactJSON(t, c.ok("get", "api/staging", "db")); got != `{"host":"db2","user":"app"}` {
		t.Errorf("get db after setting an object: got %s", got)
	}
	c.ok("set", "api/staging", "db=none")
	if got := compactJSON(t, c.ok("get", "api/staging")); got != `{"a.b":"dot","db":"none","flag":1}` {
		t.Errorf("get after replacing a subtree with a leaf: got %s", got)
	}
	err := c.fails("get", "api/staging", "db.host")
	wantErr(t, "get of a missing key", err, "api/staging: no key db.host")
}

func TestEnvGet_envFile(t *testing.T) {
	c := etcdCLI(t)
	c.ok("set", "web/production", "port=8080", "db.url=postgres://x", "secret.token=s3", `msg=say "hi"`)
	out := c.ok("get", "web/production", "--env")
	for _, want := range []string{"web/production", "PORT=\"8080\"\n", "DB_URL=\"postgres://x\"\n", "TOKEN=\"" + renv.Hidden + "\"\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("get --env has no %q:\n%s", want, out)
		}
	}
	if out := c.ok("get", "web/production", "--env", "--show-secrets"); !strings.Contains(out, "TOKEN=\"s3\"\n") {
		t.Errorf("get --env --show-secrets has no TOKEN=\"s3\":\n%s", out)
	}
	c.ok("set", "web/production", "bad-name!=x", "1st=y")
	err := c.fails("get", "web/production", "--env")
	wantErr(t, "get --env of keys that cannot be variables", err, "web/production: key bad-name!", "web/production: key 1st")
	wantErr(t, "get --env with KEY", c.fails("get", "web/production", "port", "--env"), "--env prints the whole document")
}

func TestEnvUnset(t *testing.T) {
	c := etcdCLI(t)
	c.ok("set", "web/production", "a=1", "b=2", "db.host=h", "db.port=1")
	out, errOut, err := c.run("", "unset", "web/production", "a", "nope", "db")
	if err != nil {
		t.Fatalf("unset: %v\n%s", err, errOut)
	}
	if !strings.HasPrefix(out, "web/production: unset a, db (revision ") {
		t.Errorf("unset printed %q", out)
	}
	if errOut != "web/production: nope was not set\n" {
		t.Errorf("unset stderr: got %q, want the key that was not set", errOut)
	}
	if got := compactJSON(t, c.ok("get", "web/production")); got != `{"b":2}` {
		t.Errorf("get after unset: got %s", got)
	}
	if out := c.ok("unset", "web/production", "a"); out != "web/production: unchanged\n" {
		t.Errorf("unset of a missing key printed %q", out)
	}
}

func TestEnvImport(t *testing.T) {
	c := etcdCLI(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "cfg.json")
	c.ok("set", "web/production", "keep=1", "change=old", "db.host=h")
	os.WriteFile(file, []byte(`{"change": "new", "db": {"port": 5432}, "added": [1, 2]}`), 0o644)

	out := c.ok("import", "web/production", file)
	if !strings.HasPrefix(out, "web/production: 2 added, 1 changed, 0 removed (revision ") {
		t.Errorf("import printed %q", out)
	}
	if got := compactJSON(t, c.ok("get", "web/production")); got != `{"added":[1,2],"change":"new","db":{"host":"h","port":5432},"keep":1}` {
		t.Errorf("get after a merging import: got %s", got)
	}

	out = c.ok("import", "--replace", "web/production", file)
	if !strings.HasPrefix(out, "web/production: 0 added, 0 changed, 2 removed (revision ") {
		t.Errorf("import --replace printed %q", out)
	}
	if got := compactJSON(t, c.ok("get", "web/production")); got != `{"added":[1,2],"change":"new","db":{"port":5432}}` {
		t.Errorf("get after import --replace: got %s", got)
	}

	stdout, _, err := c.run(`{"x": {"y": true}}`, "import", "web/staging", "-")
	if err != nil || !strings.HasPrefix(stdout, "web/staging: 1 added, 0 changed, 0 removed") {
		t.Errorf("import from stdin: %v, printed %q", err, stdout)
	}

	os.WriteFile(file, []byte(`[1]`), 0o644)
	wantErr(t, "import of an array", c.fails("import", "web/production", file), file)
	os.WriteFile(file, []byte(`{"a": {"b": }}`), 0o644)
	wantErr(t, "import of broken JSON", c.fails("import", "web/production", file), file)
	wantErr(t, "import of a missing file", c.fails("import", "web/production", filepath.Join(dir, "nope.json")), "nope.json")
}

func TestEnvExportImport_roundTrip(t *testing.T) {
	c := etcdCLI(t)
	c.ok("set", "web/production", "n=1.50", "s=x", `arr=[{"a":null}]`, "o={}", "secret.key=k", "secret.db.password=pw", "u=日本")
	want := compactJSON(t, c.ok("get", "web/production", "--show-secrets"))

	out, errOut, err := c.run("", "export", "web/production", "--show-secrets")
	if err != nil || errOut != "" {
		t.Fatalf("export --show-secrets: %v, stderr %q", err, errOut)
	}
	export := filepath.Join(t.TempDir(), "export.json")
	os.WriteFile(export, []byte(out), 0o600)
	c.ok("import", "web/copy", export)
	if got := compactJSON(t, c.ok("get", "web/copy", "--show-secrets")); got != want {
		t.Errorf("after export and import: got %s, want %s", got, want)
	}

	masked, errOut, err := c.run("", "export", "web/production")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "web/production: 2 secret values masked") || !strings.Contains(errOut, "--show-secrets") {
		t.Errorf("a masked export says on stderr %q, want that 2 secrets are masked", errOut)
	}
	if strings.Contains(masked, "pw") || !strings.Contains(masked, renv.Hidden) {
		t.Errorf("export without --show-secrets:\n%s", masked)
	}
	os.WriteFile(export, []byte(masked), 0o600)
	err = c.fails("import", "web/other", export)
	wantErr(t, "import of a masked export", err, "secret.key", "--show-secrets")
	if got := c.ok("get", "web/other"); strings.TrimSpace(got) != "{}" {
		t.Errorf("a refused import wrote %s", got)
	}
}

func TestEnvSecrets_masked(t *testing.T) {
	c := etcdCLI(t)
	c.ok("set", "web/production", "secret.token=t0ps3cret", "plain=visible")
	c.ok("set", "api/staging", "secret=whole")
	for _, args := range [][]string{
		{"get", "web/production"},
		{"get", "web/production", "secret"},
		{"export", "web/production"},
		{"dump"},
	} {
		out := c.ok(args...)
		if strings.Contains(out, "t0ps3cret") || strings.Contains(out, "whole") || !strings.Contains(out, renv.Hidden) {
			t.Errorf("%s shows a secret or no mask:\n%s", strings.Join(args, " "), out)
		}
		if args[0] != "get" || len(args) == 2 {
			if !strings.Contains(out, "visible") {
				t.Errorf("%s hides a plain value:\n%s", strings.Join(args, " "), out)
			}
		}
	}
	if got := c.ok("get", "web/production", "secret.token"); got != renv.Hidden+"\n" {
		t.Errorf("get secret.token: got %q, want the mask", got)
	}
	if got := c.ok("get", "web/production", "secret.token", "--show-secrets"); got != "t0ps3cret\n" {
		t.Errorf("get secret.token --show-secrets: got %q", got)
	}
	var dump map[string]map[string]map[string]any
	if err := json.Unmarshal([]byte(c.ok("dump", "--show-secrets")), &dump); err != nil {
		t.Fatal(err)
	}
	if dump["api"]["staging"]["secret"] != "whole" || dump["web"]["production"]["plain"] != "visible" {
		t.Errorf("dump --show-secrets: got %v", dump)
	}
	err := c.fails("set", "web/production", "secret.token="+renv.Hidden)
	wantErr(t, "set of the mask", err, "secret.token")
	if got := c.ok("get", "web/production", "secret.token", "--show-secrets"); got != "t0ps3cret\n" {
		t.Errorf("a refused set changed secret.token to %q", got)
	}
}

func TestEnvNuke(t *testing.T) {
	c := etcdCLI(t)
	c.ok("set", "web/production", "a=1", "b.c=2")
	c.ok("set", "web/staging", "a=1")
	c.ok("set", "api/production", "a=1")

	_, _, err := c.run("y\n", "nuke", "web/production")
	wantErr(t, "nuke without a terminal", err, "2 keys of web/production", "--yes")
	if got := compactJSON(t, c.ok("get", "web/production")); got != `{"a":1,"b":{"c":2}}` {
		t.Errorf("a refused nuke deleted keys: %s", got)
	}
	if out := c.ok("nuke", "web/production", "--yes"); out != "web/production: deleted 2 keys\n" {
		t.Errorf("nuke --yes printed %q", out)
	}
	if got := c.ok("get", "web/production"); strings.TrimSpace(got) != "{}" {
		t.Errorf("get after nuke: %s", got)
	}
	if out := c.ok("nuke", "web/production", "--yes"); out != "web/production: nothing to delete\n" {
		t.Errorf("nuke of an empty document printed %q", out)
	}

	c.ok("set", "web/production", "a=1")
	wantErr(t, "nuke --all-envs of APP/ENV", c.fails("nuke", "web/production", "--all-envs", "--yes"), "give APP")
	if out := c.ok("nuke", "web", "--all-envs", "--yes"); out != "web/production, web/staging: deleted 2 keys\n" {
		t.Errorf("nuke --all-envs printed %q", out)
	}
	var dump map[string]map[string]any
	json.Unmarshal([]byte(c.ok("dump")), &dump)
	if _, ok := dump["web"]; ok || dump["api"] == nil {
		t.Errorf("after nuke --all-envs of web: dump %v", dump)
	}
}

// The default environment: $PUSHDEPLOY_ENV, else the agent configuration's only one, else
// production.
func TestEnvDoc_defaultEnv(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	c := newEnvCLI(t, "--config=", "--endpoints", etcd.Endpoints[0])
	if out := c.ok("set", "web", "a=1"); !strings.HasPrefix(out, "web/production: set a") {
		t.Errorf("set without ENV nor config: %q", out)
	}
	t.Setenv("PUSHDEPLOY_ENV", "qa")
	if out := c.ok("set", "web", "a=1"); !strings.HasPrefix(out, "web/qa: set a") {
		t.Errorf("set with PUSHDEPLOY_ENV=qa: %q", out)
	}
	t.Setenv("PUSHDEPLOY_ENV", "")
	c.flags = []string{"--config", agentConfig(t, etcd.Endpoints[0], "staging"), "--endpoints", etcd.Endpoints[0]}
	if out := c.ok("set", "web", "a=1"); !strings.HasPrefix(out, "web/staging: set a") {
		t.Errorf("set with one environment in the agent config: %q", out)
	}
	c.flags[1] = agentConfig(t, etcd.Endpoints[0], "staging", "production")
	wantErr(t, "set with two environments in the agent config", c.fails("set", "web", "a=1"), "several environments (staging, production)")
}

// agentConfig writes a valid agent configuration whose etcd section points at endpoint.
func agentConfig(t *testing.T, endpoint string, envs ...string) string {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s\n"), 0o600)
	path := filepath.Join(dir, "agent.yaml")
	cfg := fmt.Sprintf("data_dir: %s/data\nenvironments: [%s]\napps:\n  web:\n    repo: acme/web\n    remote: file:///srv/web.git\n    secret_file: %s\n    config:\n      env: %s\netcd:\n  endpoints: [%s]\n",
		dir, strings.Join(envs, ", "), secret, envs[0], endpoint)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Flags beat ETCDCTL_* variables, which beat the agent configuration, which beats the
// defaults: the layers below the one that counts point at a dead port.
func TestEnvSettings_precedence(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	live, dead := etcd.Endpoints[0], deadEndpoint(t)
	fast := []string{"--command-timeout", "1s", "--dial-timeout", "1s"}
	tests := []struct {
		name              string
		config, etcdctl   string // "" for none
		flag              string
		wantOK            bool
		wantErrEndpointIn string
	}{
		{"defaults are overridden by the agent config", live, "", "", true, ""},
		{"ETCDCTL_ENDPOINTS beats the agent config", dead, live, "", true, ""},
		{"--endpoints beats ETCDCTL_ENDPOINTS and the config", dead, dead, live, true, ""},
		{"--endpoints beats a live ETCDCTL_ENDPOINTS", live, live, dead, false, dead},
		{"ETCDCTL_ENDPOINTS beats a live agent config", live, dead, "", false, dead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newEnvCLI(t, append([]string{"--config", agentConfig(t, tt.config, "staging")}, fast...)...)
			if tt.etcdctl != "" {
				t.Setenv("ETCDCTL_ENDPOINTS", tt.etcdctl)
			}
			if tt.flag != "" {
				c.flags = append(c.flags, "--endpoints", tt.flag)
			}
			out, _, err := c.run("", "set", "web", "k=v")
			if tt.wantOK {
				if err != nil || !strings.HasPrefix(out, "web/staging: ") {
					t.Errorf("set: %v, printed %q", err, out)
				}
				return
			}
			if !errors.Is(err, renv.ErrUnavailable) {
				t.Errorf("set: got %v, want renv.ErrUnavailable", err)
			}
			wantErr(t, "set", err, tt.wantErrEndpointIn)
		})
	}

	t.Run("a missing --config is an error", func(t *testing.T) {
		c := newEnvCLI(t, "--endpoints", live, "--config", filepath.Join(t.TempDir(), "nope.yaml"))
		wantErr(t, "get", c.fails("get", "web/production"), "nope.yaml")
	})
	t.Run("a broken config is an error", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		os.WriteFile(path, []byte("etcd: [\n"), 0o600)
		c := newEnvCLI(t, "--endpoints", live, "--config", path)
		wantErr(t, "get", c.fails("get", "web/production"), path)
	})
}

func TestEnvSettings_tls(t *testing.T) {
	etcd := testenv.StartEtcdTLS(t)
	c := newEnvCLI(t, "--config=", "--endpoints", etcd.Endpoints[0],
		"--cacert", etcd.CACert, "--cert", etcd.Cert, "--key", etcd.Key)
	c.ok("set", "web/production", "a=1")
	if got := c.ok("get", "web/production", "a"); got != "1\n" {
		t.Errorf("get over TLS: got %q", got)
	}
	// The same through ETCDCTL_* variables.
	c.flags = []string{"--config=", "--command-timeout", "1s", "--dial-timeout", "1s"}
	t.Setenv("ETCDCTL_ENDPOINTS", etcd.Endpoints[0])
	t.Setenv("ETCDCTL_CACERT", etcd.CACert)
	t.Setenv("ETCDCTL_CERT", etcd.Cert)
	t.Setenv("ETCDCTL_KEY", etcd.Key)
	if got := c.ok("get", "web/production", "a"); got != "1\n" {
		t.Errorf("get over TLS from ETCDCTL_*: got %q", got)
	}
	// Without the client certificate the server refuses.
	t.Setenv("ETCDCTL_CERT", "")
	t.Setenv("ETCDCTL_KEY", "")
	c.fails("get", "web/production")
}

func TestEnv_unreachable(t *testing.T) {
	dead := deadEndpoint(t)
	c := newEnvCLI(t, "--config=", "--endpoints", dead, "--command-timeout", "500ms", "--dial-timeout", "500ms")
	for _, args := range [][]string{{"get", "web/production"}, {"set", "web/production", "a=1"}, {"dump"}} {
		start := time.Now()
		err := c.fails(args...)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s against a dead endpoint took %s", args[0], took)
		}
		if !errors.Is(err, renv.ErrUnavailable) {
			t.Errorf("%s: got %v, want renv.ErrUnavailable", args[0], err)
		}
		wantErr(t, args[0], err, strings.TrimPrefix(dead, "http://"))
	}
}

// Bad arguments fail before anything is written, with a message naming them; these need
// no etcd, as they fail first.
func TestEnv_badArguments(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	c := newEnvCLI(t, "--config=", "--endpoints", etcd.Endpoints[0])
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"set", "web/production", "a=1", "noequals"}, []string{`"noequals"`, "KEY=VALUE"}},
		{[]string{"set", "web/production", "a=1", "=x"}, []string{`"=x"`, "empty key"}},
		{[]string{"set", "web/production"}, []string{"arg"}},
		{[]string{"set", "b@d/production", "a=1"}, []string{`"b@d/production"`, "app name"}},
		{[]string{"set", "/production", "a=1"}, []string{`"/production"`, "app name"}},
		{[]string{"set", "web/prod/x", "a=1"}, []string{`"web/prod/x"`, "environment name"}},
		{[]string{"set", "web/", "a=1"}, []string{`"web/"`, "environment name"}},
		{[]string{"get", "web b", "a"}, []string{`"web b"`, "app name"}},
		{[]string{"unset", "web/production", ""}, []string{`key ""`}},
		{[]string{"get", "web/production", "--dial-timeout", "-1s"}, []string{"--dial-timeout"}},
		{[]string{"get", "web/production", "--endpoints", ","}, []string{"--endpoints"}},
		{[]string{"get", "web/production", "--user", ":pw"}, []string{"--user"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			wantErr(t, strings.Join(tt.args, " "), c.fails(tt.args...), tt.want...)
		})
	}
	if got := c.ok("get", "web/production"); strings.TrimSpace(got) != "{}" {
		t.Errorf("refused commands wrote %s", got)
	}
}

// The password never appears in what the command prints, even when etcd rejects it.
func TestEnvSettings_userNotEchoed(t *testing.T) {
	c := newEnvCLI(t, "--config=", "--endpoints", deadEndpoint(t), "--command-timeout", "500ms",
		"--dial-timeout", "500ms", "--user", "root:hunter2")
	out, errOut, err := c.run("", "get", "web/production")
	if err == nil || strings.Contains(out+errOut+err.Error(), "hunter2") {
		t.Errorf("get with --user printed the password or succeeded: %v\n%s%s", err, out, errOut)
	}
}
