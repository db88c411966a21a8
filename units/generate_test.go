package units

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// goldenCases render each testdata/<dir>/service.json into testdata/<dir>/<golden>, and
// verify every unit with systemd-analyze against a real release directory.
var goldenCases = []struct {
	dir, app, golden string
	user             bool
	release          string // the verify release's directory name
}{
	{dir: "single", app: "web", golden: "units.golden", release: testSHA},
	{dir: "multi", app: "shop", golden: "units.golden", release: testSHA},
	{dir: "multi", app: "shop", golden: "units-user.golden", user: true, release: testSHA},
	{dir: "ndm", app: "npm", golden: "units.golden", release: testSHA},
	// a release directory with a space and a %, which a specifier would otherwise eat
	{dir: "hostile", app: "odd", golden: "units.golden", release: "odd 100% release"},
}

func TestGenerate_golden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.dir+"/"+c.golden, func(t *testing.T) {
			spec, err := Load(filepath.Join("testdata", c.dir))
			if err != nil {
				t.Fatal(err)
			}
			opts := Options{App: c.app, SHA: testSHA, ReleaseDir: "/srv/pushdeploy/apps/" + c.app + "/releases/" + testSHA, User: c.user}
			files, err := Generate(spec, opts)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(c.dir, c.golden), render(files))

			again, err := Generate(spec, opts)
			if err != nil || !reflect.DeepEqual(again, files) {
				t.Errorf("a second Generate gave other files (err %v)", err)
			}
			if !slices.IsSortedFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) }) {
				t.Errorf("files are not sorted by name")
			}

			opts.ReleaseDir = newRelease(t, c.release, programs(t, spec)...)
			if files, err = Generate(spec, opts); err != nil {
				t.Fatal(err)
			}
			verify(t, writeUnits(t, files), unitsToVerify(spec, c.app)...)
		})
	}
}

// programs lists the programs the spec runs from its release, for newRelease; a bare name
// systemd cannot find here (node on a machine without it) is replaced by one in the release.
func programs(t *testing.T, spec *Spec) []string {
	var list []string
	for _, s := range spec.Services {
		p := s.Command[0]
		switch {
		case strings.Contains(p, "/") && !filepath.IsAbs(p):
			list = append(list, filepath.Join(s.WorkDir, p))
		case !strings.Contains(p, "/") && !inSystemdPath(p):
			t.Logf("%s is not installed: verifying %s with a stand-in in the release", p, s.Name)
			s.Command = append([]string{"bin/" + p}, s.Command[1:]...)
			list = append(list, filepath.Join(s.WorkDir, "bin", p))
		}
	}
	return list
}

// inSystemdPath looks a name up the way systemd resolves a bare ExecStart= program.
func inSystemdPath(name string) bool {
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

func TestGenerate_names(t *testing.T) {
	spec, err := Parse([]byte(`{"services": {"api": {"command": "/bin/true", "instances": 2, "port": 4000},
		"db": {"command": "/bin/true"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(spec, Options{App: "shop", ReleaseDir: "/srv/shop"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	want := []string{
		"pushdeploy-shop-api@.service",
		"pushdeploy-shop-api@1.service.d/instance.conf",
		"pushdeploy-shop-api@2.service.d/instance.conf",
		"pushdeploy-shop-db@.service",
		"pushdeploy-shop.target",
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}
	got := Instances(spec, "shop")
	wantInst := []string{"pushdeploy-shop-api@1.service", "pushdeploy-shop-api@2.service", "pushdeploy-shop-db@1.service"}
	if !reflect.DeepEqual(got, wantInst) {
		t.Errorf("Instances = %q, want %q", got, wantInst)
	}
	if f := files[len(files)-1]; !strings.Contains(f.Content, "Wants=pushdeploy-shop-db@1.service\n") {
		t.Errorf("the target does not want every instance:\n%s", f.Content)
	}
}

func TestGenerate_options(t *testing.T) {
	spec, err := Parse([]byte(`{"services": {"web": {"command": "/bin/true"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ok := Options{App: "web", ReleaseDir: "/srv/web/releases/" + testSHA, SHA: testSHA}
	tests := []struct {
		name   string
		change func(*Options)
		want   string // "" means no error
	}{
		{"valid", func(o *Options) {}, ""},
		{"relative release", func(o *Options) { o.ReleaseDir = "releases/x" }, `release dir: must be an absolute, clean path, got "releases/x"`},
		{"unclean release", func(o *Options) { o.ReleaseDir = "/srv/../x" }, `release dir: must be an absolute, clean path`},
		{"quote in release", func(o *Options) { o.ReleaseDir = `/srv/a"b` }, `release dir: must not contain control characters, quotes`},
		{"dollar in release", func(o *Options) { o.ReleaseDir = `/srv/$x` }, `release dir: must not contain`},
		{"newline in release", func(o *Options) { o.ReleaseDir = "/srv/a\nb" }, `release dir: must not contain`},
		{"release under /tmp", func(o *Options) { o.ReleaseDir = "/tmp/x" }, `release dir: /tmp/x is under /tmp or /var/tmp, which PrivateTmp= hides from service web`},
		{"release under /var/tmp", func(o *Options) { o.ReleaseDir = "/var/tmp/x" }, `which PrivateTmp= hides`},
		{"bad app", func(o *Options) { o.App = "my.app" }, `app: must be 1-64 letters`},
		{"app with @", func(o *Options) { o.App = "a@b" }, `app: must be`},
		{"short sha", func(o *Options) { o.SHA = "abc123" }, `sha: must be a full lowercase hex commit id`},
		{"relative env file", func(o *Options) { o.EnvFiles = []string{"env"} }, `env file 1: must be an absolute, clean path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.change(&o)
			_, err := Generate(spec, o)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got error %v, want none", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestGenerate_handBuiltSpec(t *testing.T) {
	// A Spec built in code skips Parse: Generate checks it again rather than write a broken unit.
	spec := &Spec{Services: map[string]*Service{"web": {Name: "web", Command: []string{"/bin/echo", "a\nb"},
		Instances: 1, Env: map[string]string{"BAD KEY": "x", "OK": "tab\there"}}}}
	_, err := Generate(spec, Options{App: "web", ReleaseDir: "/srv/web"})
	for _, want := range []string{
		`services.web.command[1]: must not contain control characters such as newline, tab or NUL (found '\n' at byte 1)`,
		`services.web.env.BAD KEY: not a valid variable name`,
		`services.web.env.OK: must not contain control characters`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got error %v, want one containing %q", err, want)
		}
	}
}

func TestGenerate_userManagerDropsAreNamed(t *testing.T) {
	spec, err := Parse([]byte(`{"services": {"web": {"command": "/bin/true", "user": "www"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(spec, Options{App: "web", ReleaseDir: "/srv/web", User: true})
	if err != nil {
		t.Fatal(err)
	}
	unit := files[0].Content
	for _, p := range protections {
		if p.userManager == "" {
			continue
		}
		for _, line := range p.lines {
			if strings.Contains(unit, "\n"+line+"\n") {
				t.Errorf("user unit sets %s, which a user manager refuses", line)
			}
			if !strings.Contains(unit, "# not set: "+line+" ("+p.userManager+")\n") {
				t.Errorf("user unit does not say it dropped %s", line)
			}
		}
	}
	if strings.Contains(unit, "\nUser=") || !strings.Contains(unit, "# not set: User=www (a user manager runs every service as its own user)\n") {
		t.Errorf("user unit sets User= or does not say why not:\n%s", unit)
	}
}
