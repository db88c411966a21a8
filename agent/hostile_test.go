package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/state"
)

// TestAgent_hostileRepo pushes trees git would never check out, made with git plumbing,
// between good deploys. A refused tree fails its deploy with an error naming the entry and
// current stays on the good release; a tree of odd but harmless entries deploys; nothing is
// written outside the release; the agent keeps answering webhooks, and deploys the next
// good push.
func TestAgent_hostileRepo(t *testing.T) {
	type entry = testenv.Entry
	file := func(name string) entry { return entry{Name: name, Mode: "100644", Content: "x\n"} }
	dir := func(name string, es ...entry) entry { return entry{Name: name, Mode: "40000", Entries: es} }
	victim := t.TempDir()
	passwd := filepath.Join(victim, "etc", "passwd")
	if err := os.MkdirAll(filepath.Dir(passwd), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	f := newFixture(t, nil)
	good := f.commit("1")
	if d := f.pushAndDeploy(good); d.Status != state.StatusSucceeded {
		t.Fatalf("good deploy: got %s (%s), want succeeded", d.Status, d.Error)
	}
	steps := []struct {
		name    string
		entries []entry
		want    string // in the deploy's error; "" for a deploy that succeeds
	}{
		{"dotdot", []entry{file("ok"), dir("..", file("passwd"))}, `"..": unsafe path in tree`},
		{".git in another case", []entry{file("ok"), dir("a", dir(".GIT", file("config")))}, `"a/.GIT": unsafe path in tree`},
		{"gitlink", []entry{file("ok"), {Name: "vendor", Mode: "160000", Content: strings.Repeat("7", 40)}}, `"vendor": submodules are not supported`},
		{"name of 256 bytes", []entry{file(strings.Repeat("n", 256))}, "file name too long"},
		{"symlink to /etc", []entry{{Name: "a", Mode: "120000", Content: filepath.Dir(passwd)}}, ""},
		{"a file under what was that symlink", []entry{dir("a", file("passwd"))}, ""},
		{"newlines and bytes that are not UTF-8", []entry{file("new\nline"), file("\xff\xfe")}, ""},
	}
	live := good
	for _, st := range steps {
		sha := f.repo.CommitTree(st.name, st.entries)
		d := f.pushAndDeploy(sha)
		if st.want == "" {
			if d.Status != state.StatusSucceeded {
				t.Errorf("%s: got %s (%s), want succeeded", st.name, d.Status, d.Error)
			}
			live = sha
		} else {
			if d.Status != state.StatusFailed || !strings.Contains(d.Error, st.want) {
				t.Errorf("%s: got %s (%q), want failed with %q", st.name, d.Status, d.Error, st.want)
			}
			if strings.ContainsAny(d.Error, "\n\r") {
				t.Errorf("%s: error %q spans lines", st.name, d.Error)
			}
		}
		if got := f.current(); got != live {
			t.Errorf("%s: current is %.12s, want %.12s", st.name, got, live)
		}
		if r := f.post("/webhook/web", []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`), map[string]string{"X-GitHub-Event": "ping"}, true); r.Code != 200 {
			t.Errorf("%s: ping after the deploy: got %d %s, want 200", st.name, r.Code, r.Error)
		}
	}
	if data, err := os.ReadFile(passwd); err != nil || string(data) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("%s: got %q, %v, want it untouched", passwd, data, err)
	}
	if ents, err := os.ReadDir(filepath.Dir(passwd)); err != nil || len(ents) != 1 {
		t.Errorf("%s: got %d entries, %v, want only passwd", filepath.Dir(passwd), len(ents), err)
	}
	next := f.commit("2")
	if d := f.pushAndDeploy(next); d.Status != state.StatusSucceeded || f.current() != next {
		t.Errorf("good deploy after the hostile ones: got %s (%s), current %.12s, want succeeded at %.12s", d.Status, d.Error, f.current(), next)
	}
}
