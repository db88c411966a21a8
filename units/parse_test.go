package units

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse_defaults(t *testing.T) {
	spec, err := Parse([]byte(`{"services": {"web": {"command": "bin/server --port 80"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Service{Name: "web", Command: []string{"bin/server", "--port", "80"}, Instances: 1, Env: map[string]string{},
		Rollout: Rollout{MaxParallel: "1", AutoRevert: true}, StopTimeout: 30 * time.Second}
	if got := spec.Services["web"]; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if spec.Format != FormatNative {
		t.Errorf("format %q, want %q", spec.Format, FormatNative)
	}
}

func TestParse_everyField(t *testing.T) {
	spec, err := Load(filepath.Join("testdata", "multi"))
	if err != nil {
		t.Fatal(err)
	}
	api := spec.Services["api"]
	want := &Service{Name: "api", Command: []string{"bin/api", "--listen", "127.0.0.1"}, Description: "Shop API",
		Instances: 3, Port: 3000, Env: map[string]string{"LOG_LEVEL": "debug", "WORKERS": "2"},
		Health: &Health{HTTP: "/healthz", Timeout: time.Second, Interval: time.Second, MinHealthyTime: 5 * time.Second,
			HealthyDeadline: time.Minute},
		Rollout:     Rollout{MaxParallel: "50%", Canary: 1, AutoRevert: true},
		StopTimeout: 10 * time.Second, MemoryMax: "512M", CPUWeight: 200, TasksMax: 64,
		StateDirs: []string{"uploads", "cache/img"}, Notify: true}
	if !reflect.DeepEqual(api, want) {
		t.Errorf("got %+v\nwant %+v", api, want)
	}
	w := spec.Services["worker"]
	if w.User != "shop" || w.WorkDir != "worker" || w.Rollout.AutoRevert || w.StopTimeout != 1500*time.Millisecond ||
		!reflect.DeepEqual(w.Health.Command, []string{"bin/worker", "--check"}) ||
		!reflect.DeepEqual(w.Command, []string{"bin/worker", "--queue", "emails and jobs"}) {
		t.Errorf("worker: got %+v", w)
	}
	if !reflect.DeepEqual(spec.Env, map[string]string{"NODE_ENV": "production", "LOG_LEVEL": "info"}) {
		t.Errorf("shared env %v", spec.Env)
	}
}

func TestParse_errors(t *testing.T) {
	tests := []struct {
		name, json string
		want       []string // every line of the error, in order
	}{
		{"not JSON", `{"services": `, []string{"invalid JSON at line 1: unexpected end of JSON input"}},
		{"not an object", `[1]`, []string{"must be a JSON object"}},
		{"no services", `{"services": {}}`, []string{"services: no service to run"}},
		{"unknown top-level field", `{"services": {"web": {"command": "x"}}, "envs": {}}`,
			[]string{"envs: unknown field (known: $schema, env, services)"}},
		{"unknown service field", `{"services": {"web": {"command": "x", "replicas": 2}}}`,
			[]string{"services.web.replicas: unknown field (known: command, cpu_weight, description, env, health, instances, memory_max, notify, port, relax, rollout, state_dirs, stop_timeout, tasks_max, user, workdir)"}},
		{"field names are case-sensitive", `{"services": {"web": {"Command": "x"}}}`, []string{"services.web.Command: unknown field"}},
		{"unknown nested field", `{"services": {"web": {"command": "x", "port": 2000, "health": {"http": "/", "path": "/"}}}}`,
			[]string{"services.web.health.path: unknown field (known: command, healthy_deadline, http, interval, min_healthy_time, tcp, timeout)"}},
		{"wrong type", `{"services": {"web": {"command": "x", "instances": "3"}}}`, []string{"services.web.instances: must be a whole number, got string"}},
		{"fraction", `{"services": {"web": {"command": "x", "port": 80.5}}}`, []string{"services.web.port: must be a whole number, got number 80.5"}},
		{"missing command", `{"services": {"web": {}}}`, []string{"services.web.command: missing"}},
		{"empty command", `{"services": {"web": {"command": "  "}}}`, []string{"services.web.command: must not be empty"}},
		{"command of numbers", `{"services": {"web": {"command": [1, 2]}}}`, []string{"services.web.command: must be a string or an array of strings"}},
		{"zero instances", `{"services": {"web": {"command": "x", "instances": 0}}}`, []string{"services.web.instances: must be 1..64, got 0"}},
		{"too many instances", `{"services": {"web": {"command": "x", "instances": 65}}}`, []string{"services.web.instances: must be 1..64, got 65"}},
		{"privileged port", `{"services": {"web": {"command": "x", "port": 80}}}`,
			[]string{"services.web.port: must be 1024..65535 (the units grant no capability to bind lower ports), got 80"}},
		{"ports past 65535", `{"services": {"web": {"command": "x", "port": 65535, "instances": 2}}}`, []string{"services.web.port: 2 instances from port 65535 go past 65535"}},
		{"PORT twice", `{"services": {"web": {"command": "x", "port": 3000, "env": {"PORT": "1"}}}}`, []string{"services.web.env.PORT: is set from port; set one of them"}},
		{"shared PORT and port", `{"env": {"PORT": "80"}, "services": {"web": {"command": "x", "port": 3000}}}`, []string{"env.PORT: is set from services.web.port; set one of them"}},
		{"bad service name", `{"services": {"web.api": {"command": "x"}}}`,
			[]string{"services.web.api: service name must be 1-64 letters, digits, '-' or '_', starting with a letter or digit"}},
		{"two health checks", `{"services": {"web": {"command": "x", "port": 3000, "health": {"http": "/", "tcp": true}}}}`,
			[]string{"services.web.health: must have exactly one of http, tcp and command, got 2"}},
		{"no health check", `{"services": {"web": {"command": "x", "health": {"timeout": "1s"}}}}`,
			[]string{"services.web.health: must have exactly one of http, tcp and command, got 0"}},
		{"http check without port", `{"services": {"web": {"command": "x", "health": {"http": "/up"}}}}`,
			[]string{"services.web.health: an http or tcp check needs the service's port"}},
		{"http check not a path", `{"services": {"web": {"command": "x", "port": 3000, "health": {"http": "up"}}}}`,
			[]string{`services.web.health.http: must be a URL path such as "/healthz", got "up"`}},
		{"bad duration", `{"services": {"web": {"command": "x", "stop_timeout": "30"}}}`,
			[]string{`services.web.stop_timeout: must be a duration such as "30s" or "1m30s", got "30"`}},
		{"negative duration", `{"services": {"web": {"command": "x", "stop_timeout": "-1s"}}}`, []string{`services.web.stop_timeout: must be positive, got "-1s"`}},
		{"deadline before min healthy time", `{"services": {"web": {"command": "x", "port": 3000, "health": {"tcp": true, "min_healthy_time": "2m"}}}}`,
			[]string{"services.web.health.min_healthy_time: must be shorter than healthy_deadline (1m0s), got 2m0s"}},
		{"max_parallel zero", `{"services": {"web": {"command": "x", "rollout": {"max_parallel": 0}}}}`, []string{"services.web.rollout.max_parallel: must be at least 1, got 0"}},
		{"max_parallel percent", `{"services": {"web": {"command": "x", "rollout": {"max_parallel": "150%"}}}}`,
			[]string{`services.web.rollout.max_parallel: must be a percentage in (0, 100], got "150%"`}},
		{"canary over instances", `{"services": {"web": {"command": "x", "instances": 2, "rollout": {"canary": 3}}}}`,
			[]string{"services.web.rollout.canary: must be 0..2 (the instances), got 3"}},
		{"root user", `{"services": {"web": {"command": "x", "user": "root"}}}`, []string{"services.web.user: must not be root; leave it out for a dynamic user"}},
		{"bad user", `{"services": {"web": {"command": "x", "user": "a b"}}}`, []string{`services.web.user: must be a user name or uid, got "a b"`}},
		{"bad memory", `{"services": {"web": {"command": "x", "memory_max": "lots"}}}`,
			[]string{`services.web.memory_max: must be bytes with an optional K, M, G or T suffix, a percentage, or infinity, got "lots"`}},
		{"bad cpu weight", `{"services": {"web": {"command": "x", "cpu_weight": 20000}}}`, []string{"services.web.cpu_weight: must be 1..10000, got 20000"}},
		{"state dir escapes", `{"services": {"web": {"command": "x", "state_dirs": ["../etc"]}}}`,
			[]string{`services.web.state_dirs[0]: must be a relative path of letters, digits, '.', '-' and '_', got "../etc"`}},
		{"state dir twice", `{"services": {"web": {"command": "x", "state_dirs": ["a", "a"]}}}`, []string{`services.web.state_dirs[1]: "a" is listed twice`}},
		{"workdir escapes", `{"services": {"web": {"command": "x", "workdir": "../x"}}}`,
			[]string{`services.web.workdir: must be a relative path inside the release without quotes, backslashes or $, got "../x"`}},
		{"unknown protection", `{"services": {"web": {"command": "x", "relax": ["ProtectEverything"]}}}`,
			[]string{`services.web.relax[0]: unknown protection "ProtectEverything" (known: PrivateTmp, PrivateDevices`}},
		{"protection a dynamic user keeps", `{"services": {"web": {"command": "x", "relax": ["ProtectSystem"]}}}`,
			[]string{"services.web.relax[0]: ProtectSystem cannot be relaxed for a dynamic user, which systemd always gives it; set user to relax it"}},
		{"protection twice", `{"services": {"web": {"command": "x", "relax": ["LockPersonality", "LockPersonality"]}}}`,
			[]string{"services.web.relax[1]: LockPersonality is listed twice"}},
		{"every error at once", `{"services": {"b": {"command": "x", "instances": 0}, "a": {"command": "x", "cpu_weight": -1, "tasks_max": -1}}}`,
			[]string{"services.a.cpu_weight: must be 1..10000, got -1", "services.a.tasks_max: must be positive, got -1", "services.b.instances: must be 1..64, got 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.json))
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("error %d is %q, want %q", i, lines[i], want)
				}
			}
		})
	}
}

func TestRollout_Parallel(t *testing.T) {
	tests := []struct {
		max       string
		instances int
		want      int
	}{
		{"1", 4, 1}, {"2", 4, 2}, {"10", 4, 4}, {"50%", 4, 2}, {"25%", 3, 1}, {"34%", 3, 2}, {"100%", 5, 5}, {"1%", 64, 1},
	}
	for _, tt := range tests {
		if got := (Rollout{MaxParallel: tt.max}).Parallel(tt.instances); got != tt.want {
			t.Errorf("max_parallel %q with %d instances: %d at once, want %d", tt.max, tt.instances, got, tt.want)
		}
	}
}

// TestParse_readmeExample keeps the README's example valid.
func TestParse_readmeExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## service.json\n")
	_, example, ok2 := strings.Cut(section, "```json\n")
	example, _, ok3 := strings.Cut(example, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no ## service.json section with a json example")
	}
	spec, err := Parse([]byte(example))
	if err != nil {
		t.Fatalf("the README's example: %v", err)
	}
	if _, err := Generate(spec, Options{App: "shop", ReleaseDir: "/srv/shop/releases/" + testSHA, SHA: testSHA}); err != nil {
		t.Fatalf("the README's example: %v", err)
	}
}

func TestLoad_noServiceFile(t *testing.T) {
	_, err := Load(t.TempDir())
	if !errors.Is(err, ErrNoServiceFile) {
		t.Errorf("got %v, want ErrNoServiceFile", err)
	}
}

func TestLoad_errorNamesFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "service.json"), []byte(`{"services": {"web": {"command": "x", "instances": 0}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	want := "load " + filepath.Join(dir, "service.json") + ": services.web.instances: must be 1..64, got 0"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
