package units

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kballard/go-shellquote"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const testSHA = "0123456789abcdef0123456789abcdef01234567"

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the generated units (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// render joins files the way `pushdeploy units render` prints them.
func render(files []File) string {
	var b strings.Builder
	for i, f := range files {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("# " + f.Name + "\n" + f.Content)
	}
	return b.String()
}

// newRelease makes a release directory with executable programs at the given relative
// paths. It is not under /tmp: the units refuse that, since PrivateTmp= would hide it.
func newRelease(t testing.TB, name string, programs ...string) string {
	t.Helper()
	base, err := os.UserCacheDir()
	if err == nil {
		err = os.MkdirAll(base, 0o755)
	}
	if err == nil && hidden(base) {
		err = fmt.Errorf("the cache directory %s is under /tmp", base)
	}
	if err != nil {
		testenv.Unavailable(t, "release directory outside /tmp", "%v", err)
	}
	root, err := os.MkdirTemp(base, "pushdeploy-units-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	dir := filepath.Join(root, "releases", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range programs {
		path := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeUnits writes files into a new unit directory that any user can read, since
// systemdTest runs as nobody.
func writeUnits(t testing.TB, files []File) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pushdeploy-units-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(f.Content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// verify runs `systemd-analyze verify` on units in dir. It fails on any message, not only on
// a non-zero exit: verify only warns about an unknown key or an assignment it ignores.
func verify(t testing.TB, dir string, units ...string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		testenv.Unavailable(t, "systemd-analyze", "not installed (Debian package systemd): cannot verify units")
	}
	args := []string{"verify", "--man=no"}
	for _, u := range units {
		args = append(args, filepath.Join(dir, u))
	}
	out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", strings.Join(units, " "), err, out)
	}
}

// unitsToVerify lists what verify should load from files: the target, every instance and
// every instance's check unit (templates load through their instances, with the instance's
// drop-ins).
func unitsToVerify(spec *Spec, app string) []string {
	list := append(Instances(spec, app), TargetName(app))
	for _, in := range InstancesOf(spec, app) {
		if HasCheckUnit(in.Service) {
			list = append(list, CheckUnitName(app, in.Service.Name, in.N))
		}
	}
	return list
}

var scoreRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// securityScore runs `systemd-analyze security --offline=yes` on one unit file.
func securityScore(t testing.TB, path string) float64 {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		testenv.Unavailable(t, "systemd-analyze", "not installed (Debian package systemd): cannot score units")
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", path).CombinedOutput()
	m := scoreRE.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security --offline=yes %s: %v\n%s", path, err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	return score
}

// loaded is what systemd's own parser made of a unit: argv as the process receives it, and
// the environment assignments in order.
type loaded struct {
	argv []string
	env  []string
}

// systemdLoad loads unit from dir with the real systemd in test mode (`systemd --test`,
// which parses units, dumps them and exits: no manager runs and nothing starts), and returns
// the unit's command line and environment as systemd parsed them.
func systemdLoad(t testing.TB, dir, unit string) loaded {
	t.Helper()
	bin := ""
	for _, p := range []string{"/lib/systemd/systemd", "/usr/lib/systemd/systemd"} {
		if _, err := os.Stat(p); err == nil {
			bin = p
		}
	}
	if bin == "" {
		testenv.Unavailable(t, "systemd", "not installed (Debian package systemd): cannot load units with its parser")
	}
	support := writeUnits(t, []File{{Name: "basic.target", Content: "[Unit]\nDescription=basic\n"}})
	home := writeUnits(t, nil)
	if err := os.Chmod(home, 0o777); err != nil {
		t.Fatal(err)
	}
	args := []string{"env", "-i", "HOME=" + home, "XDG_RUNTIME_DIR=" + home, "SYSTEMD_UNIT_PATH=" + dir + ":" + support,
		bin, "--test", "--user", "--unit=" + unit, "--log-target=console"}
	if os.Geteuid() == 0 { // systemd refuses test mode as root
		if _, err := exec.LookPath("setpriv"); err != nil {
			testenv.Unavailable(t, "setpriv", "not installed (Debian package util-linux): cannot run systemd --test as nobody")
		}
		args = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("systemd --test --unit=%s: %v\n%s", unit, err, stderr.Bytes())
	}
	if strings.Contains(stderr.String(), dir) { // a warning about one of the units
		t.Errorf("systemd --test --unit=%s complained:\n%s", unit, stderr.Bytes())
	}
	var l loaded
	in := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "\t-> Unit ") {
			in = line == "\t-> Unit "+unit+":"
			continue
		}
		if !in {
			continue
		}
		if v, ok := strings.CutPrefix(line, "\t\tEnvironment: "); ok {
			l.env = append(l.env, v)
		}
		if v, ok := strings.CutPrefix(line, "\t\t\tCommand Line: "); ok {
			words, err := shellquote.Split(v)
			if err != nil {
				t.Fatalf("split systemd's command line %q: %v", v, err)
			}
			for _, w := range words {
				l.argv = append(l.argv, expandDollars(t, w))
			}
		}
	}
	return l
}

// expandDollars applies what systemd does to each argument when it starts the process:
// "$$" becomes "$". Any other "$" would be a variable reference the units never mean.
func expandDollars(t testing.TB, w string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		if w[i] != '$' {
			b.WriteByte(w[i])
			continue
		}
		if i+1 >= len(w) || w[i+1] != '$' {
			t.Errorf("argument %q has an unescaped $ that systemd would expand", w)
		}
		b.WriteByte('$')
		i++
	}
	return b.String()
}
