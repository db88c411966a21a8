package release

import (
	"context"
	"errors"
	"fmt"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// ErrNotFastForward means moving a branch to a commit would drop commits it has: the
// commit does not descend from the branch's tip.
var ErrNotFastForward = errors.New("not a fast-forward")

// Move says what MoveBranch did.
type Move struct {
	Branch      string `json:"branch"`
	SHA         string `json:"sha"`
	Old         string `json:"old,omitempty"` // where the branch pointed before; "" if it did not exist
	UpToDate    bool   `json:"up_to_date"`    // it pointed at SHA already: nothing was pushed
	FastForward bool   `json:"fast_forward"`  // SHA descends from Old (or the branch is new)
	Forced      bool   `json:"forced"`        // it did not, and force moved it anyway
}

// MoveBranch points the remote's branch at exactly commit sha, with the remote's
// credentials: the commit is fetched from the remote (from branch via, which holds it, or
// by id) into memory, never from anywhere else, and pushed back under the new name, the
// push guarded so that it applies only if the branch still points where it was read.
// Outcomes:
//   - the branch points at sha already: UpToDate, nothing pushed;
//   - sha descends from the branch's tip, or the branch is new: pushed, FastForward;
//   - it does not: an error wrapping ErrNotFastForward, unless force (then Forced);
//   - sha is not on via and the server does not serve commits by id: an error;
//   - someone moved the branch meanwhile: the push is refused, an error.
func (r Remote) MoveBranch(ctx context.Context, sha, via, branch string, force bool) (Move, error) {
	mv := Move{Branch: branch, SHA: sha}
	if !ValidSHA(sha) {
		return mv, fmt.Errorf("move %s to %q: not a 40-hex commit id", branch, sha)
	}
	for _, b := range []string{via, branch} {
		if err := validBranch(b); err != nil {
			return mv, err
		}
	}
	auth, err := r.auth()
	if err != nil {
		return mv, err
	}
	ctx, cancel, explain := r.bound(ctx)
	defer cancel()
	st := memory.NewStorage()
	rem := r.bind(st)
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return mv, fmt.Errorf("list refs of %s: %w", redact(r.URL), explain(err))
	}
	specs := []config.RefSpec{config.RefSpec("+" + plumbing.NewBranchReferenceName(via).String() + ":refs/pushdeploy/via")}
	for _, ref := range refs {
		if ref.Name() == plumbing.NewBranchReferenceName(branch) {
			mv.Old = ref.Hash().String()
			specs = append(specs, config.RefSpec("+"+ref.Name().String()+":refs/pushdeploy/old"))
		}
	}
	if mv.Old == sha {
		mv.UpToDate = true
		return mv, nil
	}
	fetch := func(specs []config.RefSpec) error {
		err := rem.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Tags: git.NoTags, Auth: auth})
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil
		}
		return explain(err)
	}
	if err := fetch(specs); err != nil {
		return mv, fmt.Errorf("fetch %s from %s: %w", via, redact(r.URL), err)
	}
	next, err := object.GetCommit(st, plumbing.NewHash(sha))
	if err != nil {
		if ferr := fetch([]config.RefSpec{config.RefSpec(sha + ":refs/pushdeploy/sha")}); ferr != nil {
			return mv, fmt.Errorf("commit %.12s is not on %s and %s does not serve it by id: %w", sha, via, redact(r.URL), ferr)
		}
		if next, err = object.GetCommit(st, plumbing.NewHash(sha)); err != nil {
			return mv, fmt.Errorf("read commit %.12s: %w", sha, err)
		}
	}
	mv.FastForward = true
	if mv.Old != "" {
		old, err := object.GetCommit(st, plumbing.NewHash(mv.Old))
		if err != nil {
			return mv, fmt.Errorf("read %s's tip %.12s: %w", branch, mv.Old, err)
		}
		if mv.FastForward, err = old.IsAncestor(next); err != nil {
			return mv, fmt.Errorf("compare %.12s with %s's tip %.12s: %w", sha, branch, mv.Old, err)
		}
	}
	if !mv.FastForward && !force {
		return mv, fmt.Errorf("move %s from %.12s to %.12s: %w: %.12s does not contain %.12s", branch, mv.Old, sha, ErrNotFastForward, sha, mv.Old)
	}
	mv.Forced = !mv.FastForward
	local := plumbing.ReferenceName("refs/heads/pushdeploy-promote")
	if err := st.SetReference(plumbing.NewHashReference(local, next.Hash)); err != nil {
		return mv, err
	}
	spec := config.RefSpec(local.String() + ":" + plumbing.NewBranchReferenceName(branch).String())
	if mv.Forced {
		spec = "+" + spec
	}
	opts := &git.PushOptions{RefSpecs: []config.RefSpec{spec}, Auth: auth}
	if mv.Old != "" {
		opts.RequireRemoteRefs = []config.RefSpec{config.RefSpec(mv.Old + ":" + plumbing.NewBranchReferenceName(branch).String())}
	}
	err = rem.PushContext(ctx, opts)
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return mv, fmt.Errorf("push %.12s to %s on %s: %w", sha, branch, redact(r.URL), explain(err))
	}
	return mv, nil
}
