package ansible

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// needAnsible ends the test through testenv.Unavailable (a failure under CI=true) when
// ansible, its nsenter connection or ansible-lint is missing.
func needAnsible(t *testing.T) {
	t.Helper()
	for _, prog := range []string{"ansible-playbook", "ansible-doc", "ansible-lint", "nsenter"} {
		if _, err := exec.LookPath(prog); err != nil {
			testenv.Unavailable(t, "ansible", "%s not installed (Debian packages ansible ansible-lint, util-linux)", prog)
		}
	}
	if out, err := exec.Command("ansible-doc", "-t", "connection", "community.docker.nsenter").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "ansible", "no community.docker.nsenter connection (Debian package ansible has it): %v: %.300s", err, out)
	}
}

// runner runs ansible-playbook site.yml from this directory, hermetically: no
// ansible.cfg, no ~/.ansible of the machine's, no colours.
type runner struct {
	t   *testing.T
	dir string // inventories, ansible's home and temporary files
}

func newRunner(t *testing.T) *runner {
	t.Helper()
	r := &runner{t: t, dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(r.dir, "ansible.cfg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// env is the environment of every ansible program the tests run.
func (r *runner) env() []string {
	return append(os.Environ(),
		"ANSIBLE_CONFIG="+filepath.Join(r.dir, "ansible.cfg"),
		"ANSIBLE_HOME="+filepath.Join(r.dir, "home"),
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(r.dir, "tmp"),
		"ANSIBLE_NOCOLOR=1", "NO_COLOR=1", "ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_RETRY_FILES_ENABLED=0",
		"ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
	)
}

// play is the outcome of one ansible-playbook run.
type play struct {
	out     string           // standard output and error
	err     error            // the exit status
	recap   map[string]recap // PLAY RECAP, per host
	elapsed time.Duration
}

type recap struct{ ok, changed, unreachable, failed, skipped int }

var recapRE = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)`)

// run writes inventory (an ansible YAML inventory as a Go value) and runs site.yml on it
// with args (--check, --diff, --limit …).
func (r *runner) run(inventory map[string]any, args ...string) play {
	r.t.Helper()
	data, err := yaml.Marshal(inventory)
	if err != nil {
		r.t.Fatal(err)
	}
	inv, err := os.CreateTemp(r.dir, "inventory-*.yml")
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := inv.Write(data); err != nil {
		r.t.Fatal(err)
	}
	inv.Close()
	cmd := exec.CommandContext(r.t.Context(), "ansible-playbook", append([]string{"-i", inv.Name(), "site.yml"}, args...)...)
	cmd.Env = r.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	p := play{out: out.String(), err: err, recap: map[string]recap{}, elapsed: time.Since(start)}
	for _, m := range recapRE.FindAllStringSubmatch(p.out, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		p.recap[m[1]] = recap{ok: n(2), changed: n(3), unreachable: n(4), failed: n(5), skipped: n(6)}
	}
	return p
}

// mustSucceed fails the test unless the play succeeded on every one of hosts.
func (p play) mustSucceed(t *testing.T, what string, hosts ...string) {
	t.Helper()
	bad := p.err != nil
	for _, h := range hosts {
		rc, ok := p.recap[h]
		bad = bad || !ok || rc.failed > 0 || rc.unreachable > 0
	}
	if bad {
		t.Fatalf("%s: ansible-playbook: %v, recap %+v\n%s", what, p.err, p.recap, p.out)
	}
}

// recapLines returns the PLAY RECAP lines, for the test log.
func (p play) recapLines() string {
	var lines []string
	for _, m := range recapRE.FindAllString(p.out, -1) {
		lines = append(lines, strings.Join(strings.Fields(m), " "))
	}
	return strings.Join(lines, "; ")
}
