package testenv

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// clone runs the git CLI with protocol v0 (the protocol go-git speaks, and the
// one where uploadpack.allowReachableSHA1InWant matters) and reports failure
// instead of failing the test.
func gitCLI(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "protocol.version=0"}, args...)...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestServers_Clone(t *testing.T) {
	servers := []struct {
		name string
		base func(t *testing.T, root string) string
	}{
		{"git-daemon", func(t *testing.T, root string) string { return GitDaemon(t, root) }},
		{"http-backend", func(t *testing.T, root string) string { return GitHTTP(t, root) }},
		{"file", func(t *testing.T, root string) string { return FileURL(root) + "/" }},
	}
	for _, srv := range servers {
		for _, allowSHA := range []bool{true, false} {
			name := srv.name + "/allowSHA=false"
			if allowSHA {
				name = srv.name + "/allowSHA=true"
			}
			t.Run(name, func(t *testing.T) {
				root := NewRoot(t)
				bare := NewBare(t, root, "acme/web.git", allowSHA)
				repo := NewRepo(t)
				repo.Write("README", "hello\n", 0o644)
				repo.Write("bin/run", "#!/bin/sh\n", 0o755)
				first := repo.Commit("first")
				repo.Write("README", "hello again\n", 0o644)
				tip := repo.Commit("second")
				repo.Push(bare, "main:deploy-production")
				repo.Push(bare, "main")

				url := srv.base(t, root) + "acme/web.git"
				dst := filepath.Join(t.TempDir(), "clone")
				if out, err := gitCLI("", "clone", "-q", "--branch", "deploy-production", url, dst); err != nil {
					t.Fatalf("git clone %s: %v\n%s", url, err, out)
				}
				got, err := gitCLI(dst, "rev-parse", "HEAD")
				if err != nil || got != tip {
					t.Errorf("cloned HEAD: got %q (%v), want %q", got, err, tip)
				}
				if b, err := os.ReadFile(filepath.Join(dst, "README")); err != nil || string(b) != "hello again\n" {
					t.Errorf("cloned README: got %q (%v), want %q", b, err, "hello again\n")
				}
				if fi, err := os.Stat(filepath.Join(dst, "bin/run")); err != nil || fi.Mode().Perm()&0o100 == 0 {
					t.Errorf("cloned bin/run: got %v (%v), want executable", fi.Mode(), err)
				}

				// A want for a commit that is not a ref tip is served only when
				// allowSHA is set.
				fresh := t.TempDir()
				if out, err := gitCLI(fresh, "init", "-q", "--bare"); err != nil {
					t.Fatalf("git init: %v\n%s", err, out)
				}
				out, err := gitCLI(fresh, "fetch", "-q", "--depth=1", url, first)
				if gotOK := err == nil; gotOK != allowSHA {
					t.Errorf("fetch of non-tip %s: got success %v, want %v\n%s", first, gotOK, allowSHA, out)
				}
			})
		}
	}
}

func TestGitHTTPCounting(t *testing.T) {
	root := NewRoot(t)
	bare := NewBare(t, root, "web.git", true)
	repo := NewRepo(t)
	repo.Write("big", strings.Repeat("x", 1<<20), 0o644)
	repo.Commit("big")
	repo.Push(bare, "main")

	url, sent := GitHTTPCounting(t, root)
	if got := sent(); got != 0 {
		t.Fatalf("sent before any request: got %d, want 0", got)
	}
	dst := filepath.Join(t.TempDir(), "clone")
	if out, err := gitCLI("", "clone", "-q", url+"web.git", dst); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	// 1 MiB of one byte compresses to about 1 KiB; the pack plus ref
	// advertisement is well above 100 bytes and well below the raw size.
	if got := sent(); got < 100 || got > 1<<20 {
		t.Errorf("sent after clone: got %d bytes, want between 100 and %d", got, 1<<20)
	}
}

func TestRepo_CommitTree(t *testing.T) {
	repo := NewRepo(t)
	repo.Write("a", "a\n", 0o644)
	parent := repo.Commit("parent")

	sub := strings.Repeat("1", 40)
	sha := repo.CommitTree("hostile", []Entry{
		{Name: "..", Mode: "100644", Content: "dotdot\n"},
		{Name: ".git", Mode: "40000", Entries: []Entry{{Name: "config", Mode: "100644", Content: "[core]\n"}}},
		{Name: ".GIT", Mode: "100755", Content: "#!/bin/sh\n"},
		{Name: "a/b", Mode: "100644", Content: "slash\n"},
		{Name: "", Mode: "100644", Content: "empty name\n"},
		{Name: "link", Mode: "120000", Content: "/tmp"},
		{Name: "vendor", Mode: "160000", Content: sub},
	})

	if got := repo.Git("rev-parse", "main"); got != sha {
		t.Errorf("main: got %s, want %s", got, sha)
	}
	if got := repo.Git("rev-parse", sha+"^"); got != parent {
		t.Errorf("parent: got %s, want %s", got, parent)
	}

	// ls-tree refuses the empty name, so read the raw tree.
	got := map[string]string{} // name -> "mode id"
	raw := []byte(repo.Git("cat-file", "tree", sha+"^{tree}"))
	for len(raw) > 0 {
		nul := bytes.IndexByte(raw, 0)
		if nul < 0 || len(raw) < nul+21 {
			t.Fatalf("raw tree: truncated entry %q", raw)
		}
		mode, name, _ := strings.Cut(string(raw[:nul]), " ")
		got[name] = mode + " " + hex.EncodeToString(raw[nul+1:nul+21])
		raw = raw[nul+21:]
	}
	blob := func(content string) string {
		return runGit(t, repo.Dir(), []byte(content), "hash-object", "--stdin")
	}
	gitDir := repo.writeTree([]Entry{{Name: "config", Mode: "100644", Content: "[core]\n"}})
	want := map[string]string{
		"..":     "100644 " + blob("dotdot\n"),
		".git":   "40000 " + gitDir,
		".GIT":   "100755 " + blob("#!/bin/sh\n"),
		"a/b":    "100644 " + blob("slash\n"),
		"":       "100644 " + blob("empty name\n"),
		"link":   "120000 " + blob("/tmp"),
		"vendor": "160000 " + sub,
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("entry %q: got %q, want %q", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries: got %d (%v), want %d", len(got), got, len(want))
	}
	if got := repo.Git("cat-file", "-p", gitDir); !strings.HasSuffix(got, "\tconfig") {
		t.Errorf(".git tree: got %q, want one entry config", got)
	}
}

func TestRepo_CommitTree_Served(t *testing.T) {
	// A hostile tree (without an empty name, which git refuses to pack) can be
	// fetched from a server, which is what release tests rely on.
	root := NewRoot(t)
	bare := NewBare(t, root, "web.git", true)
	repo := NewRepo(t)
	sha := repo.CommitTree("hostile", []Entry{
		{Name: "..", Mode: "100644", Content: "x"},
		{Name: ".git", Mode: "40000", Entries: []Entry{{Name: "hooks", Mode: "100755", Content: "x"}}},
		{Name: "sub", Mode: "160000", Content: strings.Repeat("2", 40)},
	})
	repo.Push(bare, "main")
	url := GitDaemon(t, root) + "web.git"
	dst := t.TempDir()
	if out, err := gitCLI(dst, "init", "-q", "--bare"); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	if out, err := gitCLI(dst, "fetch", "-q", "--depth=1", url, sha); err != nil {
		t.Fatalf("fetch hostile commit: %v\n%s", err, out)
	}
	if out, err := gitCLI(dst, "cat-file", "-e", sha+"^{tree}"); err != nil {
		t.Errorf("fetched tree missing: %v\n%s", err, out)
	}
}

func TestRepo_WriteSymlinkRemove(t *testing.T) {
	repo := NewRepo(t)
	repo.Write("d/e/f", "f", 0o755)
	repo.Symlink("rel", "d/e/f")
	repo.Symlink("abs", "/etc/passwd")
	sha := repo.Commit("c")
	tests := []struct{ path, want string }{
		{"d/e/f", "100755 f"},
		{"rel", "120000 d/e/f"},
		{"abs", "120000 /etc/passwd"},
	}
	for _, tt := range tests {
		mode := strings.Fields(repo.Git("ls-tree", sha, tt.path))[0]
		content := repo.Git("cat-file", "-p", sha+":"+tt.path)
		if got := mode + " " + content; got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.path, got, tt.want)
		}
	}
	repo.Remove("d")
	sha = repo.Commit("removed")
	if got := repo.Git("ls-tree", "--name-only", sha); got != "abs\nrel" {
		t.Errorf("after Remove: got %q, want %q", got, "abs\nrel")
	}
}
