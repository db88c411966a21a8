package release

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

func TestRemote_MoveBranch(t *testing.T) {
	for _, allowSHA := range []bool{true, false} {
		name := "by id"
		if !allowSHA {
			name = "through the branch"
		}
		t.Run(name, func(t *testing.T) {
			repo := testenv.NewRepo(t)
			bare := testenv.NewBare(t, testenv.NewRoot(t), "acme/web.git", allowSHA)
			r := Remote{URL: testenv.FileURL(bare.Path())}
			ctx := context.Background()
			tip := func(b string) string {
				t.Helper()
				return strings.TrimSpace(bare.Git("rev-parse", "refs/heads/"+b))
			}
			repo.Write("VERSION", "1\n", 0o644)
			v1 := repo.Commit("one")
			repo.Push(bare, "main:deploy-staging")
			// A new branch.
			mv, err := r.MoveBranch(ctx, v1, "deploy-staging", "deploy-production", false)
			if err != nil || !mv.FastForward || mv.Old != "" || tip("deploy-production") != v1 {
				t.Fatalf("new branch: got %+v, %v; production at %s", mv, err, tip("deploy-production"))
			}
			if mv, err = r.MoveBranch(ctx, v1, "deploy-staging", "deploy-production", false); err != nil || !mv.UpToDate {
				t.Errorf("again: got %+v, %v; want up to date", mv, err)
			}
			// Staging moves on twice; production gets exactly the first of them, not the tip.
			repo.Write("VERSION", "2\n", 0o644)
			v2 := repo.Commit("two")
			repo.Write("VERSION", "3\n", 0o644)
			repo.Commit("three")
			repo.Push(bare, "main:deploy-staging")
			mv, err = r.MoveBranch(ctx, v2, "deploy-staging", "deploy-production", false)
			if err != nil || !mv.FastForward || mv.Old != v1 || tip("deploy-production") != v2 {
				t.Fatalf("fast-forward to a commit below staging's tip: got %+v, %v", mv, err)
			}
			// A production hotfix that staging lacks: not a fast-forward.
			repo.Git("checkout", "-q", "-b", "hotfix", v1)
			repo.Write("HOTFIX", "x\n", 0o644)
			fix := repo.Commit("hotfix")
			repo.Push(bare, "+hotfix:deploy-production")
			v3 := tip("deploy-staging")
			if _, err := r.MoveBranch(ctx, v3, "deploy-staging", "deploy-production", false); !errors.Is(err, ErrNotFastForward) {
				t.Fatalf("over a hotfix: got %v, want ErrNotFastForward", err)
			}
			if tip("deploy-production") != fix {
				t.Fatal("a refused move moved the branch")
			}
			mv, err = r.MoveBranch(ctx, v3, "deploy-staging", "deploy-production", true)
			if err != nil || !mv.Forced || tip("deploy-production") != v3 {
				t.Fatalf("forced: got %+v, %v", mv, err)
			}
		})
	}
}
