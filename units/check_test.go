package units

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// serviceLines returns the directives of a unit's [Service] section, comments included,
// without those in skip (by key).
func serviceLines(content string, skip ...string) []string {
	_, body, _ := strings.Cut(content, "[Service]\n")
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(body), "\n") {
		key, _, _ := strings.Cut(line, "=")
		if !slices.Contains(skip, key) {
			out = append(out, line)
		}
	}
	return out
}

// TestGenerate_checkUnit holds a service's check unit to its template: the same working
// directory, environment, environment files, user, limits and sandbox, line for line, so a
// check can do exactly what the service can and nothing more; only how it is started and
// stopped differs.
func TestGenerate_checkUnit(t *testing.T) {
	spec, err := Parse([]byte(`{"env": {"SHARED": "1"}, "services": {
		"web": {"command": "bin/server", "instances": 2, "port": 4000, "memory_max": "64M", "state_dirs": ["data"],
			"health": {"command": ["bin/check", "--port", "x"], "timeout": "1500ms"}},
		"worker": {"command": "bin/worker", "user": "shop", "relax": ["ProtectHome"], "health": {"command": "/bin/true"}},
		"api": {"command": "bin/api", "port": 5000, "health": {"http": "/up"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []bool{false, true} {
		opts := Options{App: "shop", SHA: testSHA, ReleaseDir: "/srv/pushdeploy/apps/shop/releases/" + testSHA,
			User: user, EnvFiles: []string{"/srv/pushdeploy/apps/shop/config/env"}}
		files := generate(t, spec, opts)
		byName := map[string]string{}
		for _, f := range files {
			byName[f.Name] = f.Content
		}
		if _, ok := byName[CheckUnitName("shop", "api", 0)]; ok {
			t.Errorf("user %v: api has an http check, but got a check unit", user)
		}
		for _, svc := range []string{"web", "worker"} {
			tmpl, check := byName[UnitName("shop", svc, 0)], byName[CheckUnitName("shop", svc, 0)]
			if check == "" {
				t.Fatalf("user %v: no %s", user, CheckUnitName("shop", svc, 0))
			}
			skip := []string{"Type", "ExecStart", "Restart", "RestartSec", "TimeoutStartSec", "TimeoutStopSec"}
			if got, want := serviceLines(check, skip...), serviceLines(tmpl, skip...); !slices.Equal(got, want) {
				t.Errorf("user %v: %s: the check unit's context differs from the service's\n got: %s\nwant: %s",
					user, svc, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
			}
			for _, want := range []string{"Type=oneshot\n", "StartLimitIntervalSec=0\n"} {
				if !strings.Contains(check, want) {
					t.Errorf("user %v: %s check unit lacks %q:\n%s", user, svc, want, check)
				}
			}
			if strings.Contains(check, "Restart=") || strings.Contains(check, "[Install]") || strings.Contains(byName[TargetName("shop")], ".check@") {
				t.Errorf("user %v: %s: a check unit must never restart nor be wanted by the target", user, svc)
			}
		}
		web := byName[CheckUnitName("shop", "web", 0)]
		for _, want := range []string{
			"ExecStart=" + opts.ReleaseDir + "/bin/check --port x\n",
			"TimeoutStartSec=1500ms\n",
		} {
			if !strings.Contains(web, want) {
				t.Errorf("user %v: web check unit lacks %q:\n%s", user, want, web)
			}
		}
		if !user && !strings.Contains(web, "DynamicUser=yes\nUser=pushdeploy-shop-web\n") {
			t.Errorf("web check unit does not share the service's dynamic user:\n%s", web)
		}
		// Instance 2's check sees instance 2's PORT, as its service does.
		if got := byName[CheckUnitName("shop", "web", 2)+".d/instance.conf"]; !strings.Contains(got, "Environment=PORT=4001\n") || strings.Contains(got, "ExecStart") {
			t.Errorf("user %v: web check instance 2 drop-in:\n%s\nwant PORT=4001 and no ExecStart", user, got)
		}
	}
}

// TestGenerate_checkUnitVerifies loads a check unit into systemd's own parser and scores its
// sandbox: it is as confined as the service.
func TestGenerate_checkUnitVerifies(t *testing.T) {
	spec, err := Parse([]byte(`{"services": {"web": {"command": "bin/server", "port": 4000,
		"health": {"command": ["bin/check"]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	release := newRelease(t, testSHA, "bin/server", "bin/check")
	dir := writeUnits(t, generate(t, spec, Options{App: "shop", ReleaseDir: release}))
	verify(t, dir, CheckUnitName("shop", "web", 1))
	score := securityScore(t, filepath.Join(dir, CheckUnitName("shop", "web", 1)))
	t.Logf("systemd-analyze security --offline=yes: check unit scores %.1f", score)
	if score > maxExposure {
		t.Errorf("check unit scores %.1f, want at most %.1f", score, maxExposure)
	}
}

func TestDynamicUserName(t *testing.T) {
	long := strings.Repeat("a", 40)
	tests := []struct{ app, service, want string }{
		{"shop", "web", "pushdeploy-shop-web"},
		{"shop", "Api_2", "pushdeploy-shop-Api_2"},
		{"shop", strings.Repeat("w", 15), "pushdeploy-shop-" + strings.Repeat("w", 15)},
	}
	for _, tt := range tests {
		if got := DynamicUserName(tt.app, tt.service); got != tt.want {
			t.Errorf("DynamicUserName(%q, %q) = %q, want %q", tt.app, tt.service, got, tt.want)
		}
	}
	a, b := DynamicUserName("shop", long), DynamicUserName("shop", long+"b")
	for _, name := range []string{a, b, DynamicUserName(long, "web")} {
		if len(name) > maxUserName || !userRE.MatchString(name) || !strings.HasPrefix(name, "pushdeploy-") {
			t.Errorf("long names: got %q, want a valid user name of at most %d characters", name, maxUserName)
		}
	}
	if a == b {
		t.Errorf("two long service names share the user %q", a)
	}
}
