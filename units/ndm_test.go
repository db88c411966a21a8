package units

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The inputs are ndm's own examples: its README and its test fixtures.
func TestParse_ndm(t *testing.T) {
	tests := []struct {
		name, json string
		want       map[string]*Service
		env        map[string]string
	}{
		{
			name: "README example",
			json: `{
			  "baby-animals": {"description": "baby animal thumbnailing service", "scripts": {"start": "./baby-animal.js"},
			    "env": {"PORT": "8000", "USER": "bcoe"}, "args": {"--kitten": "cute"}},
			  "ndm-test2": {"description": "the awesome service", "module": "be-awesome", "scripts": {"start": "./bin/foo.js"},
			    "env": {"PORT": "5000"}, "args": {"--verbose": "false"}},
			  "env": {"APP": "my-test-app", "NODE_ENV": "production"},
			  "args": {"--batman": "greatest-detective"}
			}`,
			want: map[string]*Service{
				"baby-animals": {Description: "baby animal thumbnailing service", WorkDir: "node_modules/baby-animals",
					Command: []string{"node", "./baby-animal.js", "--batman=greatest-detective", "--kitten=cute"},
					Env:     map[string]string{"PORT": "8000", "USER": "bcoe"}},
				"ndm-test2": {Description: "the awesome service", WorkDir: "node_modules/be-awesome",
					Command: []string{"node", "./bin/foo.js", "--batman=greatest-detective", "--verbose=false"},
					Env:     map[string]string{"PORT": "5000"}},
			},
			env: map[string]string{"APP": "my-test-app", "NODE_ENV": "production"},
		},
		{
			name: "test/fixtures/args-service.json: arrays concatenate, interview questions give their default",
			json: `{"ndm-test": {"scripts": {"start": "./test.js"}, "module": "ndm-test",
			  "env": {"PORT": 8080, "HOST": {"default": "localhost", "description": "what host should I bind to?"}},
			  "args": ["--apple", "banana", "--spider-man", "sad", "awesome"]},
			  "args": ["a", "b"]}`,
			want: map[string]*Service{"ndm-test": {WorkDir: "node_modules/ndm-test",
				Command: []string{"node", "./test.js", "a", "b", "--apple", "banana", "--spider-man", "sad", "awesome"},
				Env:     map[string]string{"PORT": "8080", "HOST": "localhost"}}},
			env: map[string]string{},
		},
		{
			name: "test/fixtures/multi-process-service.json: processes and %i",
			json: `{"ndm-test-service": {"processes": 3, "scripts": {"start": "node app.js"},
			    "env": {"FOO": "bar", "PORT": "500%i"}, "args": ["--process", "%i"]},
			  "dude": {"processes": 1, "scripts": {"start": "dude.js"}, "args": {"--port": "808%i"}}}`,
			want: map[string]*Service{
				"ndm-test-service": {Instances: 3, WorkDir: "node_modules/ndm-test-service",
					Command: []string{"node", "app.js", "--process", "%i"}, Env: map[string]string{"FOO": "bar", "PORT": "500%i"}},
				"dude": {WorkDir: "node_modules/dude", Command: []string{"node", "dude.js", "--port=808%i"}, Env: map[string]string{}},
			},
			env: map[string]string{},
		},
		{
			// ndm's own fixture (fixture-max-old-space-size) writes it as a string.
			name: "maxOldSpaceSize as a string of digits",
			json: `{"web": {"scripts": {"start": "node index.js"}, "maxOldSpaceSize": "4096"}}`,
			want: map[string]*Service{"web": {WorkDir: "node_modules/web",
				Command: []string{"node", "--max-old-space-size=4096", "index.js"}, Env: map[string]string{}}},
			env: map[string]string{},
		},
		{
			name: "scoped module, maxOldSpaceSize, start script with node flags",
			json: `{"@npm/worker": {"scripts": {"start": "node  --harmony ./w.js"}, "maxOldSpaceSize": 256}}`,
			want: map[string]*Service{"npm_worker": {WorkDir: "node_modules/@npm/worker",
				Command: []string{"node", "--max-old-space-size=256", "--harmony", "./w.js"}, Env: map[string]string{}}},
			env: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := Parse([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			if spec.Format != FormatNDM {
				t.Errorf("format %q, want ndm", spec.Format)
			}
			if !reflect.DeepEqual(spec.Env, tt.env) {
				t.Errorf("shared env %v, want %v", spec.Env, tt.env)
			}
			for name, want := range tt.want {
				want.Name = name
				want.Instances = max(want.Instances, 1)
				want.StopTimeout = DefaultStopTimeout
				want.Rollout = Rollout{MaxParallel: "1", AutoRevert: true}
				want.Relax = []string{"MemoryDenyWriteExecute"}
				if got := spec.Services[name]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
				}
			}
			if len(spec.Services) != len(tt.want) {
				t.Errorf("got services %v, want %d", sortedKeys(spec.Services), len(tt.want))
			}
		})
	}
}

// TestParse_ndmNotes: what ndm itself left out is left out too, and said (ndm's own
// service.json and README do both).
func TestParse_ndmNotes(t *testing.T) {
	spec, err := Parse([]byte(`{"web": {"scripts": {"start": "a.js"}, "args": ["--x"],
		"env": {"USER": {"description": "enter a username."}, "PORT": 8000}}, "args": {"--y": "1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	web := spec.Services["web"]
	if want := []string{"node", "a.js", "--x"}; !reflect.DeepEqual(web.Command, want) {
		t.Errorf("command %q, want %q: a service's array args, without the shared object", web.Command, want)
	}
	if _, ok := web.Env["USER"]; ok || web.Env["PORT"] != "8000" {
		t.Errorf("env %v, want PORT only: an unanswered question stays unset", web.Env)
	}
	want := []string{"web.args: an array, so the shared args (an object) do not apply, as with ndm",
		"web.env.USER: an interview question without a default: left unset"}
	if !reflect.DeepEqual(spec.Notes, want) {
		t.Errorf("notes:\n got %q\nwant %q", spec.Notes, want)
	}
}

func TestParse_ndmErrors(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"zero processes", `{"web": {"scripts": {"start": "a.js"}, "processes": 0}}`, "web.processes: must be 1..64, got 0"},
		{"maxOldSpaceSize not digits", `{"web": {"scripts": {"start": "a.js"}, "maxOldSpaceSize": "4G"}}`,
			`web.maxOldSpaceSize: must be a whole number of megabytes (a number or a string of digits), got "4G"`},
		{"unknown field", `{"web": {"scripts": {"start": "a.js"}, "uid": "www"}}`, "web.uid: unknown field (known: args, description, env, maxOldSpaceSize, module, processes, scripts)"},
		{"object args with shared array", `{"web": {"scripts": {"start": "a.js"}, "args": {"--y": "1"}}, "args": ["x"]}`,
			"web.args: cannot combine an array with an object"},
		{"env value an object that is no question", `{"web": {"scripts": {"start": "a.js"}, "env": {"HOST": {"name": "h"}}}}`,
			"web.env.HOST: must be a string, number or boolean, or an interview question"},
		{"start is node alone", `{"web": {"scripts": {"start": "node "}}}`, `web.scripts.start: names no script, got "node "`},
		{"start not a string", `{"web": {"scripts": {"start": ["a.js"]}}}`, "web.scripts.start: must be a string"},
		{"module escapes", `{"web": {"module": "../..", "scripts": {"start": "a.js"}}}`, "web.module: must be a relative path inside the release"},
		{"newline in args", `{"web": {"scripts": {"start": "a.js"}, "args": ["a\nb"]}}`, "web.args[0]: must not contain control characters"},
		{"two keys, one name", `{"@a/b": {"scripts": {"start": "a.js"}}, "a_b": {"scripts": {"start": "a.js"}}}`, "a_b: becomes service a_b, like @a/b"},
		{"nothing runnable", `{"docs": {"scripts": {"build": "make"}}}`, "services: no service to run"},
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

// Load applies ndm's package.json rules: the service whose module is the package runs at the
// release root and takes its scripts and description from package.json when it has none.
func TestLoad_ndmPackageJSON(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("service.json", `{"shop": {"processes": 2}, "admin": {"module": "shop-admin", "scripts": {"start": "admin.js"}},
		"tools": {"description": "ndm run-script only"}}`)
	write("package.json", `{"name": "shop", "description": "the shop", "scripts": {"start": "node server.js --fast"}}`)
	spec, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	shop := spec.Services["shop"]
	if shop.WorkDir != "" || shop.Description != "the shop" || !reflect.DeepEqual(shop.Command, []string{"node", "server.js", "--fast"}) {
		t.Errorf("shop: got %+v", shop)
	}
	if admin := spec.Services["admin"]; admin.WorkDir != "node_modules/shop-admin" || admin.Description != "" {
		t.Errorf("admin: got %+v", admin)
	}
	if !reflect.DeepEqual(spec.Skipped, []string{"tools"}) {
		t.Errorf("skipped %q, want [tools]", spec.Skipped)
	}
}
