package release_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
)

// server starts one kind of git server over root and returns the URL of the
// repository root/name on it, and (for HTTP) a counter of bytes sent.
type server struct {
	name  string
	start func(t *testing.T, root, name string) (url string, sent func() int64)
}

var servers = []server{
	{"git-daemon", func(t *testing.T, root, name string) (string, func() int64) {
		return testenv.GitDaemon(t, root) + name, nil
	}},
	{"http-backend", func(t *testing.T, root, name string) (string, func() int64) {
		url, sent := testenv.GitHTTPCounting(t, root)
		return url + name, sent
	}},
	{"file", func(t *testing.T, root, name string) (string, func() int64) {
		return testenv.FileURL(filepath.Join(root, name)), nil
	}},
}

func openCache(t *testing.T, url string) *release.Cache {
	t.Helper()
	c, err := release.OpenCache(filepath.Join(t.TempDir(), "cache.git"), release.Remote{URL: url})
	if err != nil {
		t.Fatalf("OpenCache %s: %v", url, err)
	}
	return c
}

func TestCache_Fetch(t *testing.T) {
	for _, srv := range servers {
		for _, allowSHA := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/allowSHA=%v", srv.name, allowSHA), func(t *testing.T) {
				root := testenv.NewRoot(t)
				bare := testenv.NewBare(t, root, "acme/web.git", allowSHA)
				repo := testenv.NewRepo(t)
				repo.Write("README", "one\n", 0o644)
				repo.Commit("one")
				repo.Write("README", "two\n", 0o644)
				repo.Write("bin/start", "#!/bin/sh\necho two\n", 0o755)
				sha := repo.Commit("two")
				repo.Push(bare, "main:"+branch)
				url, _ := srv.start(t, root, "acme/web.git")
				c := openCache(t, url)
				ctx := t.Context()

				tip, err := c.Tip(ctx, branch)
				if err != nil || tip != sha {
					t.Fatalf("Tip: got %q, %v, want %q", tip, err, sha)
				}
				res, err := c.Fetch(ctx, sha, branch)
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if res.Fallback != !allowSHA {
					t.Errorf("Fallback: got %v, want %v", res.Fallback, !allowSHA)
				}
				if res.AlreadyHad {
					t.Errorf("AlreadyHad: got true on an empty cache, want false")
				}
				if res.PackBytes <= 0 {
					t.Errorf("PackBytes: got %d, want > 0", res.PackBytes)
				}

				// The fetched commit is complete: its release can be built and is
				// the commit's tree.
				s := release.NewStore(datadir.Layout{Root: t.TempDir()})
				rel, err := s.Build(ctx, app, c, sha, release.Info{Branch: branch})
				if err != nil {
					t.Fatalf("Build after Fetch: %v", err)
				}
				if got, err := os.ReadFile(filepath.Join(rel.Dir, "README")); err != nil || string(got) != "two\n" {
					t.Errorf("README: got %q, %v, want %q", got, err, "two\n")
				}

				again, err := c.Fetch(ctx, sha, branch)
				if err != nil {
					t.Fatalf("second Fetch: %v", err)
				}
				if !again.AlreadyHad || again.PackBytes != 0 {
					t.Errorf("second Fetch: got %+v, want AlreadyHad and 0 PackBytes", again)
				}
			})
		}
	}
}

// TestCache_Fetch_NotTip fetches a commit the branch has moved past: a server
// that serves wants by id gives exactly that commit (never the tip); one that
// does not must fail with ErrNotAtTip rather than deliver the tip.
func TestCache_Fetch_NotTip(t *testing.T) {
	for _, srv := range servers {
		for _, allowSHA := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/allowSHA=%v", srv.name, allowSHA), func(t *testing.T) {
				root := testenv.NewRoot(t)
				bare := testenv.NewBare(t, root, "acme/web.git", allowSHA)
				repo := testenv.NewRepo(t)
				repo.Write("VERSION", "old\n", 0o644)
				old := repo.Commit("old")
				repo.Write("VERSION", "new\n", 0o644)
				repo.Commit("new")
				repo.Push(bare, "main:"+branch)
				url, _ := srv.start(t, root, "acme/web.git")
				c := openCache(t, url)

				_, err := c.Fetch(t.Context(), old, branch)
				if !allowSHA {
					if !errors.Is(err, release.ErrNotAtTip) {
						t.Fatalf("Fetch of non-tip: got %v, want ErrNotAtTip", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Fetch of non-tip: %v", err)
				}
				rel, err := release.NewStore(datadir.Layout{Root: t.TempDir()}).Build(t.Context(), app, c, old, release.Info{})
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				if got, _ := os.ReadFile(filepath.Join(rel.Dir, "VERSION")); string(got) != "old\n" {
					t.Errorf("VERSION: got %q, want %q", got, "old\n")
				}
			})
		}
	}
}

func TestCache_Fetch_Errors(t *testing.T) {
	root := testenv.NewRoot(t)
	bare := testenv.NewBare(t, root, "acme/web.git", true)
	repo := testenv.NewRepo(t)
	sha := repo.Commit("first")
	repo.Push(bare, "main:"+branch)
	url := testenv.GitDaemon(t, root) + "acme/web.git"

	tests := []struct {
		name string
		sha  string
	}{
		{"unknown commit", strings.Repeat("ab", 20)},
		{"short sha", sha[:12]},
		{"uppercase sha", strings.ToUpper(sha)},
		{"refspec injection", "+refs/heads/*:refs/heads/*"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openCache(t, url)
			if res, err := c.Fetch(t.Context(), tt.sha, branch); err == nil {
				t.Errorf("Fetch(%q): got %+v, nil error, want an error", tt.sha, res)
			}
		})
	}
}

// TestCache_Fetch_BadBranch passes branch names no GitHub push can carry to a
// server without wants by id, so the branch itself ends up in a refspec.
func TestCache_Fetch_BadBranch(t *testing.T) {
	root := testenv.NewRoot(t)
	bare := testenv.NewBare(t, root, "acme/web.git", false)
	repo := testenv.NewRepo(t)
	sha := repo.Commit("first")
	repo.Push(bare, "main:"+branch)
	repo.Push(bare, "main:other")
	url := testenv.FileURL(bare.Path())

	for _, b := range []string{"*", "deploy-*", branch + ":refs/heads/x", "../../HEAD", branch + "/../other", ""} {
		t.Run(b, func(t *testing.T) {
			c := openCache(t, url)
			if res, err := c.Fetch(t.Context(), sha, b); err == nil {
				t.Errorf("Fetch(branch %q): got %+v, nil error, want an error", b, res)
			}
		})
	}
}

func TestCache_Tip(t *testing.T) {
	root := testenv.NewRoot(t)
	bare := testenv.NewBare(t, root, "acme/web.git", false)
	repo := testenv.NewRepo(t)
	prod := repo.Commit("prod")
	repo.Push(bare, "main:"+branch)
	staging := repo.Commit("staging")
	repo.Push(bare, "main:deploy-staging")

	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			url, _ := srv.start(t, root, "acme/web.git")
			c := openCache(t, url)
			tests := []struct {
				branch  string
				want    string
				wantErr error
			}{
				{branch, prod, nil},
				{"deploy-staging", staging, nil},
				{"deploy-missing", "", release.ErrBranchNotFound},
				{"deploy", "", release.ErrBranchNotFound}, // a prefix of real branches
			}
			for _, tt := range tests {
				got, err := c.Tip(t.Context(), tt.branch)
				if got != tt.want || !errors.Is(err, tt.wantErr) {
					t.Errorf("Tip(%q): got %q, %v, want %q, %v", tt.branch, got, err, tt.want, tt.wantErr)
				}
			}
		})
	}
}

// TestCache_Fetch_Incremental changes one file of ~200 files of random
// content: the second fetch must send only what changed, not the whole tree.
func TestCache_Fetch_Incremental(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			rng := rand.New(rand.NewChaCha8([32]byte{1}))
			random := func(n int) string {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				return string(b)
			}
			root := testenv.NewRoot(t)
			bare := testenv.NewBare(t, root, "acme/web.git", true)
			repo := testenv.NewRepo(t)
			for i := range 200 {
				repo.Write(fmt.Sprintf("dir%d/file%03d.bin", i%10, i), random(4096), 0o644)
			}
			first := repo.Commit("first")
			repo.Push(bare, "main:"+branch)
			url, sent := srv.start(t, root, "acme/web.git")
			c := openCache(t, url)

			var sent0 int64
			if sent != nil {
				sent0 = sent()
			}
			res1, err := c.Fetch(t.Context(), first, branch)
			if err != nil {
				t.Fatalf("first Fetch: %v", err)
			}
			var sent1 int64
			if sent != nil {
				sent1 = sent()
			}

			repo.Write("dir3/file013.bin", random(4096), 0o644)
			second := repo.Commit("second")
			repo.Push(bare, "main:"+branch)
			res2, err := c.Fetch(t.Context(), second, branch)
			if err != nil {
				t.Fatalf("second Fetch: %v", err)
			}
			t.Logf("pack bytes: first %d, second %d", res1.PackBytes, res2.PackBytes)
			if res1.PackBytes < 200*4096 {
				t.Errorf("first PackBytes: got %d, want >= %d (200 incompressible 4 KiB files)", res1.PackBytes, 200*4096)
			}
			if res2.PackBytes <= 0 || res2.PackBytes >= res1.PackBytes/4 {
				t.Errorf("second PackBytes: got %d, want > 0 and < %d (first/4)", res2.PackBytes, res1.PackBytes/4)
			}
			if sent != nil {
				first, second := sent1-sent0, sent()-sent1
				t.Logf("server sent: first %d, second %d", first, second)
				if second >= first/4 {
					t.Errorf("server bytes for second fetch: got %d, want < %d (first/4)", second, first/4)
				}
			}
		})
	}
}
