package renv

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

func TestVarName(t *testing.T) {
	for key, want := range map[string]string{
		"db/host":             "DB_HOST",
		"web-app/max_conns":   "WEB_APP_MAX_CONNS",
		"secret/db_password":  "DB_PASSWORD",
		"secret/api/key":      "API_KEY",
		"app/secret/x":        "APP_SECRET_X",
		"secret_x":            "SECRET_X",
		"_private":            "_PRIVATE",
		"-x":                  "_X",
		"v2/Mixed-Case":       "V2_MIXED_CASE",
		"x/1":                 "X_1",
		"secret/n/0abc":       "N_0ABC",
		"ALREADY_UPPER/lower": "ALREADY_UPPER_LOWER",
	} {
		if got, err := VarName(key); err != nil || got != want {
			t.Errorf("VarName(%q): got %q, %v, want %q", key, got, err, want)
		}
	}
}

func TestVarName_Errors(t *testing.T) {
	for key, want := range map[string]string{
		"db/host name": `key db.host name: "host name" cannot be part of a variable name (letters, digits, '_' and '-' only)`,
		"db/a.b":       `key db.a\.b: "a.b" cannot be part of a variable name (letters, digits, '_' and '-' only)`,
		"caf%C3%A9/x":  `key caf%C3%A9.x: "caf%C3%A9" cannot be part of a variable name (letters, digits, '_' and '-' only)`,
		"café":         `key café: "café" cannot be part of a variable name (letters, digits, '_' and '-' only)`,
		"a%2Fb":        `key a/b: "a/b" cannot be part of a variable name (letters, digits, '_' and '-' only)`,
		"1st":          `key 1st: variable name 1ST starts with a digit`,
		"secret/9":     `key secret.9: variable name 9 starts with a digit`,
		"secret":       `key secret: a secret needs a name: put it under "secret" (secret.NAME)`,
		"":             `empty key: no variable name`,
	} {
		if got, err := VarName(key); err == nil || err.Error() != want {
			t.Errorf("VarName(%q): got %q, %v, want error %q", key, got, err, want)
		}
	}
}

func TestRenderEnv_Golden(t *testing.T) {
	l, err := Flatten([]byte(`{"web":{"port":8080,"hosts":["a.example","b.example"],"tls":{}},
		"db":{"url":"postgres://db/app?sslmode=require","pool":{"max":20,"idle_timeout":"30s"}},
		"feature-flags":{"beta":true,"ratio":0.10},"note":null,"secret":{"db_password":"p\"w$"}}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := RenderEnv(l, "written by pushdeploy for web/production\ndo not edit\n")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "env.golden", out)
	out, err = RenderEnv(Leaves{"secret": []byte(`{}`), "a": []byte(`1`)}, "")
	if err != nil || string(out) != "A=\"1\"\n" {
		t.Errorf("empty secret object: got %q, %v, want %q", out, err, "A=\"1\"\n")
	}
}

func TestRenderEnv_Errors(t *testing.T) {
	l := Leaves{
		"db-host": []byte(`"a"`), "db_host": []byte(`"b"`), "db/host": []byte(`"c"`),
		"bad name": []byte(`1`), "1st": []byte(`1`), "nul": []byte(`"a\u0000b"`),
		"secret": []byte(`"x"`), "latin1": []byte("\"caf\xe9\""), "broken": []byte(`{`),
		"secret/ok": []byte(`"fine"`), "arr_nul": []byte(`["\u0000"]`),
	}
	out, err := RenderEnv(l, "")
	if err == nil {
		t.Fatalf("got %s, want errors", out)
	}
	if out != nil {
		t.Errorf("got output %q along with the error, want none", out)
	}
	for _, want := range []string{
		"keys db-host and db.host: both become DB_HOST",
		"keys db-host and db_host: both become DB_HOST",
		`key bad name: "bad name" cannot be part of a variable name`,
		"key 1st: variable name 1ST starts with a digit",
		"key nul: value contains a NUL byte",
		"key secret: a secret needs a name",
		"key latin1: value is not valid UTF-8",
		"key broken: value is not valid JSON",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to contain %q", err, want)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 8 {
		t.Errorf("got %d errors, want 8:\n%v", n, err)
	}
}

// tricky are string values that quoting, escaping and expansion could get wrong.
var tricky = map[string]string{
	"dq": `say "hi"`, "only_dq": `"`, "sq": "it's 'quoted'", "only_sq": "'",
	"bs": `C:\path\n\`, "bs2": `\\`, "bs_nl": "a\\\nb", "bs_dq": `\"`,
	"home": "$HOME", "brace": "${X}", "dollar_end": "cost $", "dollar_dq": `$"`,
	"backtick": "`id`", "subst": "$(id)", "arith": "$((1+1))",
	"pct": "100%", "spec": "%i %n %h %% %", "tilde": "~/x",
	"nl": "line1\nline2\n", "only_nl": "\n", "crlf": "a\r\nb\r", "tab": "\tx\t",
	"trail": "trailing  ", "lead": "  leading", "hash": "#not a comment", "semi": "a; b # c",
	"uni": "café 日本 🚀", "empty": "", "eq": "a=b=c", "ctl": "\x01\x1b[0m\x7f",
	"line_cont": "x \\", "star": "* ?",
}

// trickyLeaves are tricky, with typed values and a secret, as leaves, with the variables
// they must become.
func trickyLeaves(t *testing.T) (Leaves, map[string]string) {
	t.Helper()
	l := Leaves{}
	want := map[string]string{}
	for k, v := range tricky {
		l["t/"+k] = quote(v)
		want["T_"+strings.ToUpper(k)] = v
	}
	for k, v := range map[string]string{
		"num": "1.10", "big": "12345678901234567890", "yes": "true", "none": "null",
		"arr": `[1,"a b",{"c":"$x"}]`, "obj": `{}`, "neg": "-0",
	} {
		l["t/"+k] = []byte(v)
		want["T_"+strings.ToUpper(k)] = v
	}
	want["T_NONE"] = ""
	l["secret/t-pass"] = quote(`p@ss "w0rd" $1`)
	want["T_PASS"] = `p@ss "w0rd" $1`
	return l, want
}

// trickyHeader ends a line in a backslash (systemd continues a comment there) and holds a
// '\r' (where systemd ends a comment) before what looks like an assignment.
const trickyHeader = "renv test\nends in a backslash \\\ncarriage\rT_FAKE=injected"

// renderTricky writes the tricky leaves' environment file into a new directory.
func renderTricky(t *testing.T) (dir, file string, want map[string]string) {
	t.Helper()
	l, want := trickyLeaves(t)
	out, err := RenderEnv(l, trickyHeader)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	file = filepath.Join(dir, "app.env")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, file, want
}

// checkEnv compares the variables a reader got from the file (env -0 output) with want.
func checkEnv(t *testing.T, reader string, envOut []byte, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(envOut), "\x00"), "\x00") {
		if name, value, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "T_") {
			got[name] = value
		}
	}
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: %s missing, want %q", reader, name, w)
		} else if g != w {
			t.Errorf("%s: %s: got %q, want %q", reader, name, g, w)
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: got %s=%q, want no such variable", reader, name, g)
		}
	}
}

func TestParseEnv_RoundTrip(t *testing.T) {
	_, file, want := renderTricky(t)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEnv(data)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseEnv_Errors(t *testing.T) {
	for data, want := range map[string]string{
		"A=\"1\"\nB=2\n":             `line 2: B: value not in double quotes`,
		"# c\n\nA\n":                 `line 3: not NAME="value"`,
		"A=\"x\ny\"\n1B=\"\"\n":      `line 3: "1B" is not a variable name`,
		"A=\"1\"\nA=\"2\"\n":         `line 2: A set twice`,
		"A=\"1\nB=\"2\"\n":           `line 2: A: text after the closing quote`,
		"A=\"1\n\n":                  `line 1: A: no closing quote`,
		"A=\"1\"x\n":                 `line 1: A: text after the closing quote`,
		"A=\"\\n\"\n":                "line 1: A: a backslash must escape one of \\ \" $ `",
		" A=\"1\"\n":                 `line 1: " A" is not a variable name`,
		"A=\"\"\nB-C=\"\"\n":         `line 2: "B-C" is not a variable name`,
		"A=\"a\nb\nc\"\nB=\"\\x\"\n": "line 4: B: a backslash must escape one of \\ \" $ `",
	} {
		if got, err := ParseEnv([]byte(data)); err == nil || err.Error() != want {
			t.Errorf("ParseEnv(%q): got %q, %v, want error %q", data, got, err, want)
		}
	}
	got, err := ParseEnv([]byte("# only\n#comments\n\n"))
	if err != nil || len(got) != 0 {
		t.Errorf("comments only: got %q, %v, want no variables", got, err)
	}
}

// A real systemd reads the file, through EnvironmentFile=, to exactly the leaves' values:
// no quoting, escaping, $-expansion or %-specifier left over, nothing hidden by a comment.
func TestRenderEnv_Systemd(t *testing.T) {
	t.Parallel()
	sd := testenv.StartSystemd(t)
	dir, file, want := renderTricky(t)
	if strings.ContainsAny(dir, "% \t\\\"'") {
		t.Fatalf("temporary directory %q needs quoting in a unit file", dir)
	}
	out := filepath.Join(dir, "env.out")
	unit := "[Service]\nType=oneshot\nEnvironmentFile=" + file + "\nExecStart=/usr/bin/env -0\nStandardOutput=file:" + out + "\n"
	if err := os.WriteFile(filepath.Join(sd.UnitDir, "renv-env.service"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	sd.Systemctl(t, "daemon-reload")
	sd.Systemctl(t, "start", "renv-env.service")
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("read the unit's environment: %v; journal:\n%s", err, strings.Join(sd.JournalLines(t, "renv-env.service", 20), "\n"))
	}
	checkEnv(t, "systemd EnvironmentFile=", got, want)
	for _, line := range sd.JournalLines(t, "renv-env.service", 50) {
		if strings.Contains(line, "app.env") {
			t.Errorf("systemd complained about the environment file: %s", line)
		}
	}
}

// A POSIX shell sourcing the file with `set -a` gets the same values, expanding nothing.
func TestRenderEnv_Shell(t *testing.T) {
	t.Parallel()
	_, file, want := renderTricky(t)
	for _, shell := range []string{"/bin/sh", "/bin/bash", "/bin/dash"} {
		if _, err := os.Stat(shell); err != nil {
			t.Logf("%s: %v", shell, err)
			continue
		}
		cmd := exec.Command(shell, "-c", `set -a; . "$1"; exec /usr/bin/env -0`, "sh", file)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "X=expanded"}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("%s: %v\n%s", shell, err, stderr.Bytes())
		}
		checkEnv(t, shell+" `set -a; . FILE`", out, want)
	}
}
