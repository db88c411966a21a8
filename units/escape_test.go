package units

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// hostile values: each must reach the process exactly, as an argument and as an env value.
var hostile = []string{
	"100%", "%i", "%%", "%n %N %p %u %h", "$HOME", "${HOME}", "$$", "$", "a$", "$$$",
	"a b", "", " ", "  lead and trail  ", ";", "\\;", `"`, "'", `\`, `\\`, `trailing\`,
	`back\slash`, `\n`, `\x41`, `"quoted"`, "'single'", `a"b'c`, `--opt="x y"`,
	"-", "@x", "+x", "!x", ":x", "#x", "x # y", "; rm -rf /", "`tick`", "$(sub)", "&& ||",
	"é", "☃ 日本", "\u00a0nbsp", "=", "a=b", "KEY=", "*", "~", "{a,b}", "<>",
}

// TestGenerate_hostileValuesRoundTrip renders the hostile values and loads the unit with
// systemd's own parser: every argument and variable must come out exactly as it went in.
func TestGenerate_hostileValuesRoundTrip(t *testing.T) {
	env := map[string]string{}
	for i, v := range hostile {
		env[fmt.Sprintf("V%02d", i)] = v
	}
	raw, _ := json.Marshal(map[string]any{"services": map[string]any{"echo": map[string]any{
		"command": append([]string{"bin/echo 100% sure"}, hostile...), "env": env, "port": 7000, "instances": 2,
		"description": `100% "hostile" $HOME \ back`}}})
	spec, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	release := newRelease(t, "rel 100% sure é", "bin/echo 100% sure")
	files, err := Generate(spec, Options{App: "odd", ReleaseDir: release})
	if err != nil {
		t.Fatal(err)
	}
	dir := writeUnits(t, files)
	verify(t, dir, unitsToVerify(spec, "odd")...)
	got := systemdLoad(t, dir, "pushdeploy-odd-echo@2.service")

	want := append([]string{release + "/bin/echo 100% sure"}, hostile...)
	if len(got.argv) != len(want) {
		t.Fatalf("systemd parsed %d arguments, want %d:\n%q", len(got.argv), len(want), got.argv)
	}
	if got.argv[0] != want[0] {
		t.Errorf("program: systemd parsed %q, want %q", got.argv[0], want[0])
	}
	for i, v := range hostile {
		t.Run(fmt.Sprintf("%02d %q", i, v), func(t *testing.T) {
			if got.argv[i+1] != v {
				t.Errorf("argument: systemd parsed %q, want %q", got.argv[i+1], v)
			}
			if a := fmt.Sprintf("V%02d=%s", i, v); !slices.Contains(got.env, a) {
				t.Errorf("environment: systemd has no %q", a)
			}
		})
	}
	for _, a := range []string{"PORT=7001", "PUSHDEPLOY_INSTANCE=2", "PUSHDEPLOY_RELEASE_DIR=" + release} {
		if !slices.Contains(got.env, a) {
			t.Errorf("environment: systemd has no %q in %q", a, got.env)
		}
	}
}

// TestGenerate_ndmProcessNumber checks ndm's %i against systemd's parser: the 0-based
// process number in arguments (ExecStart= in the drop-in) and env values.
func TestGenerate_ndmProcessNumber(t *testing.T) {
	spec, err := Parse([]byte(`{"web": {"scripts": {"start": "bin/server.js"}, "processes": 3,
		"env": {"PORT": "500%i", "LITERAL": "100%"}, "args": ["--id", "w%i", "%%i"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	release := newRelease(t, testSHA, "node_modules/web/bin/node")
	spec.Services["web"].Command[0] = "bin/node" // node itself need not be installed here
	files, err := Generate(spec, Options{App: "npm", ReleaseDir: release})
	if err != nil {
		t.Fatal(err)
	}
	dir := writeUnits(t, files)
	verify(t, dir, unitsToVerify(spec, "npm")...)
	for n := 1; n <= 3; n++ {
		got := systemdLoad(t, dir, fmt.Sprintf("pushdeploy-npm-web@%d.service", n))
		i := fmt.Sprint(n - 1)
		want := []string{release + "/node_modules/web/bin/node", "bin/server.js", "--id", "w" + i, "%" + i}
		if !slices.Equal(got.argv, want) {
			t.Errorf("instance %d: argv %q, want %q", n, got.argv, want)
		}
		for _, a := range []string{"PORT=500" + i, "LITERAL=100%"} {
			if !slices.Contains(got.env, a) {
				t.Errorf("instance %d: environment has no %q in %q", n, a, got.env)
			}
		}
	}
}

func TestParse_unexpressibleValues(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"newline in argument", `{"services": {"web": {"command": ["/bin/echo", "a\nb"]}}}`,
			`services.web.command[1]: must not contain control characters such as newline, tab or NUL (found '\n' at byte 1)`},
		{"tab in argument", `{"services": {"web": {"command": ["/bin/echo", "a\tb"]}}}`, `services.web.command[1]: must not contain control characters`},
		{"NUL in argument", `{"services": {"web": {"command": ["/bin/echo", "a\u0000b"]}}}`, `services.web.command[1]: must not contain control characters such as newline, tab or NUL (found '\x00' at byte 1)`},
		{"escape in program", `{"services": {"web": {"command": ["/bin/e\u001bcho"]}}}`, `services.web.command[0]: must not contain control characters`},
		{"newline in env", `{"services": {"web": {"command": "/bin/true", "env": {"A": "x\ny"}}}}`, `services.web.env.A: must not contain control characters`},
		{"carriage return in shared env", `{"env": {"A": "x\ry"}, "services": {"web": {"command": "/bin/true"}}}`, `env.A: must not contain control characters`},
		{"DEL in env", `{"services": {"web": {"command": "/bin/true", "env": {"A": "x\u007f"}}}}`, `services.web.env.A: must not contain control characters`},
		{"C1 control in env", `{"services": {"web": {"command": "/bin/true", "env": {"A": "x\u0085"}}}}`, `services.web.env.A: must not contain control characters`},
		{"newline in description", `{"services": {"web": {"command": "/bin/true", "description": "a\nb"}}}`, `services.web.description: must not contain control characters`},
		{"trailing backslash in description", `{"services": {"web": {"command": "/bin/true", "description": "a\\"}}}`, `services.web.description: must not end with a backslash`},
		{"env name with dash", `{"services": {"web": {"command": "/bin/true", "env": {"A-B": "x"}}}}`, `services.web.env.A-B: not a valid variable name`},
		{"env name with digit first", `{"services": {"web": {"command": "/bin/true", "env": {"1A": "x"}}}}`, `services.web.env.1A: not a valid variable name`},
		{"empty env name", `{"env": {"": "x"}, "services": {"web": {"command": "/bin/true"}}}`, `env: not a valid variable name`},
		{"env name with equals", `{"services": {"web": {"command": "/bin/true", "env": {"A=B": "x"}}}}`, `services.web.env.A=B: not a valid variable name`},
		{"reserved env", `{"services": {"web": {"command": "/bin/true", "env": {"PUSHDEPLOY_SHA": "x"}}}}`, `services.web.env.PUSHDEPLOY_SHA: PUSHDEPLOY_* variables are set by pushdeploy`},
		{"quote in program", `{"services": {"web": {"command": ["/bin/it's"]}}}`, `services.web.command[0]: program must not contain quotes, backslashes or $`},
		{"dollar in program", `{"services": {"web": {"command": ["bin/$x"]}}}`, `services.web.command[0]: program must not contain`},
		{"program escapes release", `{"services": {"web": {"command": ["../other/bin"]}}}`, `services.web.command[0]: relative program "../other/bin" must stay inside the release`},
		{"program prefix", `{"services": {"web": {"command": ["-server"]}}}`, `services.web.command[0]: program name must not start with "-"`},
		{"shell pipe in string", `{"services": {"web": {"command": "server | tee log"}}}`, `services.web.command: "|" is shell syntax, but commands never run through a shell`},
		{"substitution in string", `{"services": {"web": {"command": "server $(cat args)"}}}`, `is shell syntax`},
		{"unterminated quote", `{"services": {"web": {"command": "server 'x"}}}`, `services.web.command: unterminated single quote in "server 'x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v\nwant one containing %q", err, tt.want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, exec, env string }{
		{"plain", "plain", "K=plain"},
		{"", `""`, "K="},
		{"a b", `"a b"`, `"K=a b"`},
		{"100%", "100%%", "K=100%%"},
		{"$x", "$$x", "K=$x"},
		{";", `";"`, "K=;"},
		{`a"b`, `"a\"b"`, `"K=a\"b"`},
		{`a\b`, `"a\\b"`, `"K=a\\b"`},
		{"it's", `"it's"`, `"K=it's"`},
	}
	for _, tt := range tests {
		if got := execWord(tt.in); got != tt.exec {
			t.Errorf("execWord(%q) = %s, want %s", tt.in, got, tt.exec)
		}
		if got := envAssignment("K", tt.in); got != tt.env {
			t.Errorf("envAssignment(K, %q) = %s, want %s", tt.in, got, tt.env)
		}
	}
}
