package testenv

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/githttp"
)

// gitEnvVars are added to the environment of every git process started here
// (githttp.Env): the machine's and the user's git configuration are ignored, so tests
// behave the same on every host, and git never prompts.
var gitEnvVars = githttp.Env

func gitEnv() []string {
	return append(os.Environ(), gitEnvVars...)
}

// needGit ends the test through Unavailable when the git binary is not on PATH.
func needGit(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		Unavailable(t, "git", "not on PATH (Debian package git)")
	}
}

var execPath = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
})

// runGit runs git in dir with stdin as its input, fails the test with git's
// stderr on error and returns stdout with surrounding whitespace trimmed.
func runGit(t testing.TB, dir string, stdin []byte, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// Repo is a non-bare work repository used to build commits. Its methods fail
// the test it was made in, so make it in the (sub)test that uses it.
type Repo struct {
	t   testing.TB
	dir string
}

// NewRepo creates an empty repository on branch main in a fresh temporary
// directory, with a local identity and commit signing off.
func NewRepo(t testing.TB) *Repo {
	t.Helper()
	needGit(t)
	r := &Repo{t: t, dir: t.TempDir()}
	r.Git("init", "-q", "-b", "main")
	r.Git("config", "user.name", "pushdeploy test")
	r.Git("config", "user.email", "test@pushdeploy.invalid")
	r.Git("config", "commit.gpgsign", "false")
	r.Git("config", "core.symlinks", "true")
	r.Git("config", "core.autocrlf", "false")
	return r
}

// Dir returns the work tree directory.
func (r *Repo) Dir() string { return r.dir }

// Git runs git in the work tree, fails the test with git's stderr on error and
// returns the trimmed stdout.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	return runGit(r.t, r.dir, nil, args...)
}

func (r *Repo) abs(path string) string {
	r.t.Helper()
	if filepath.IsAbs(path) || !filepath.IsLocal(path) {
		r.t.Fatalf("repo path %q: not a local relative path", path)
	}
	return filepath.Join(r.dir, path)
}

// Write writes content to path (relative to the work tree), creating parent
// directories, and sets its mode (0644 or 0755) regardless of the umask. An
// existing symlink at path is replaced, not followed.
func (r *Repo) Write(path, content string, mode os.FileMode) {
	r.t.Helper()
	p := r.abs(path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(p); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		r.t.Fatal(err)
	}
}

// Symlink creates (or replaces) a symlink at path pointing at target, which is
// stored verbatim: relative, absolute or dangling.
func (r *Repo) Symlink(path, target string) {
	r.t.Helper()
	p := r.abs(path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.RemoveAll(p); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		r.t.Fatal(err)
	}
}

// Remove deletes path (a file, symlink or whole directory) from the work tree.
func (r *Repo) Remove(path string) {
	r.t.Helper()
	if err := os.RemoveAll(r.abs(path)); err != nil {
		r.t.Fatal(err)
	}
}

// Commit stages everything in the work tree (git add -A), commits it (empty
// commits allowed) and returns the new commit's 40-hex sha.
func (r *Repo) Commit(msg string) string {
	r.t.Helper()
	r.Git("add", "-A")
	r.Git("commit", "-q", "--allow-empty", "--no-verify", "-m", msg)
	return r.Git("rev-parse", "HEAD")
}

// Push force-pushes refspec (e.g. "main:deploy-production") to b.
func (r *Repo) Push(b *Bare, refspec string) {
	r.t.Helper()
	r.Git("push", "-q", "--force", b.Path(), refspec)
}

// Entry is one entry of a tree written by CommitTree.
type Entry struct {
	Name string
	// Mode is the git mode: "100644", "100755", "120000" (symlink),
	// "160000" (gitlink) or "40000" (tree).
	Mode string
	// Content is the blob content, the symlink target, or for a gitlink the
	// 40-hex commit id it points at. Unused for trees.
	Content string
	// Entries are the entries of a tree (mode "40000").
	Entries []Entry
}

// CommitTree writes a commit whose root tree has exactly the given entries,
// parented on HEAD if there is one, moves main to it and returns its sha.
//
// Trees are written with `git hash-object -t tree --literally`, which skips
// git's checks, so hostile names (".." ".git" "a/b" "") can be made. Entries
// are sorted in git's tree order. The index and work tree are not touched.
// Git itself refuses to read a tree with an empty name ("empty filename in
// tree entry"): such a commit can be made but not fetched nor listed.
func (r *Repo) CommitTree(msg string, entries []Entry) string {
	r.t.Helper()
	tree := r.writeTree(entries)
	args := []string{"commit-tree", tree, "-m", msg}
	if head, err := r.tryGit("rev-parse", "-q", "--verify", "HEAD^{commit}"); err == nil && head != "" {
		args = append(args, "-p", head)
	}
	sha := r.Git(args...)
	r.Git("update-ref", "refs/heads/main", sha)
	return sha
}

func (r *Repo) tryGit(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = gitEnv()
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

func (r *Repo) writeTree(entries []Entry) string {
	r.t.Helper()
	sorted := append([]Entry(nil), entries...)
	sortKey := func(e Entry) string {
		if e.Mode == "40000" {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sortKey(sorted[i]) < sortKey(sorted[j]) })

	var buf bytes.Buffer
	for _, e := range sorted {
		var id string
		switch e.Mode {
		case "100644", "100755", "120000":
			id = runGit(r.t, r.dir, []byte(e.Content), "hash-object", "-w", "--stdin")
		case "160000":
			id = e.Content
		case "40000":
			id = r.writeTree(e.Entries)
		default:
			r.t.Fatalf("tree entry %q: unknown mode %q", e.Name, e.Mode)
		}
		raw, err := hex.DecodeString(id)
		if err != nil || len(raw) != 20 {
			r.t.Fatalf("tree entry %q: object id %q is not 40 hex digits", e.Name, id)
		}
		fmt.Fprintf(&buf, "%s %s\x00", e.Mode, e.Name)
		buf.Write(raw)
	}
	return runGit(r.t, r.dir, buf.Bytes(), "hash-object", "-w", "-t", "tree", "--literally", "--stdin")
}

// Bare is a bare repository under a server root. Like Repo, its methods fail
// the test it was made in.
type Bare struct {
	t    testing.TB
	path string
}

// NewRoot returns a fresh temporary directory to serve repositories from.
func NewRoot(t testing.TB) string {
	t.Helper()
	return t.TempDir()
}

// NewBare creates the bare repository root/name (name like "acme/web.git")
// with HEAD on main. allowSHA sets uploadpack.allowReachableSHA1InWant, so the
// server advertises allow-reachable-sha1-in-want as GitHub does; without it a
// client can only want advertised ref tips. Pushing over HTTP is disabled.
func NewBare(t testing.TB, root, name string, allowSHA bool) *Bare {
	t.Helper()
	needGit(t)
	if !filepath.IsLocal(name) {
		t.Fatalf("bare repository name %q: not a local relative path", name)
	}
	b := &Bare{t: t, path: filepath.Join(root, name)}
	if err := os.MkdirAll(b.path, 0o755); err != nil {
		t.Fatal(err)
	}
	b.Git("init", "-q", "--bare", "-b", "main")
	// Order matters: upload-pack reads config in file order, and
	// allowAnySHA1InWant=false also clears the allowReachableSHA1InWant bit.
	b.Git("config", "uploadpack.allowAnySHA1InWant", "false")
	b.Git("config", "uploadpack.allowReachableSHA1InWant", fmt.Sprint(allowSHA))
	b.Git("config", "http.receivepack", "false")
	return b
}

// Path returns the repository's directory.
func (b *Bare) Path() string { return b.path }

// Git runs git in the repository, fails the test with git's stderr on error
// and returns the trimmed stdout.
func (b *Bare) Git(args ...string) string {
	b.t.Helper()
	return runGit(b.t, b.path, nil, args...)
}

// SetRef points ref (e.g. "refs/heads/deploy-production") at sha.
func (b *Bare) SetRef(ref, sha string) {
	b.t.Helper()
	b.Git("update-ref", ref, sha)
}
