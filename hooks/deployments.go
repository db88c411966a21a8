package hooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-github/v92/github"
)

// ErrRejected marks a request GitHub refused as invalid (400, 409, 422): sending it again
// cannot help.
var ErrRejected = errors.New("rejected by GitHub")

// DeploymentSpec is a GitHub deployment of one commit to one environment.
type DeploymentSpec struct {
	Ref         string // the commit sha
	Environment string
	Description string
	Production  bool
}

// DeploymentStatus is one status of a GitHub deployment: State is in_progress, success,
// failure, error or inactive.
type DeploymentStatus struct {
	State       string
	Description string
	LogURL      string // empty: none
	Environment string
}

// CreateDeployment records a deployment of spec.Ref on repo and returns its id. It never
// merges the default branch in and requires no status checks: the commit is deployed as is.
func (g *GitHub) CreateDeployment(ctx context.Context, repo string, spec DeploymentSpec) (int64, error) {
	owner, name, err := SplitRepo(repo)
	if err != nil {
		return 0, err
	}
	d, _, err := g.client.Repositories.CreateDeployment(ctx, owner, name, github.DeploymentRequest{
		Ref:                   spec.Ref,
		AutoMerge:             new(false),
		RequiredContexts:      []string{},
		Environment:           new(spec.Environment),
		Description:           new(clip(spec.Description, 140)),
		TransientEnvironment:  new(false),
		ProductionEnvironment: new(spec.Production),
	})
	if err != nil {
		return 0, explainDeploy(fmt.Sprintf("create deployment of %.12s on %s", spec.Ref, repo), err)
	}
	return d.GetID(), nil
}

// CreateDeploymentStatus posts st on repo's deployment id.
func (g *GitHub) CreateDeploymentStatus(ctx context.Context, repo string, id int64, st DeploymentStatus) error {
	owner, name, err := SplitRepo(repo)
	if err != nil {
		return err
	}
	req := github.DeploymentStatusRequest{
		State:       st.State,
		Description: new(clip(st.Description, 140)),
	}
	if st.LogURL != "" {
		req.LogURL = new(st.LogURL)
	}
	if st.Environment != "" {
		req.Environment = new(st.Environment)
	}
	if _, _, err := g.client.Repositories.CreateDeploymentStatus(ctx, owner, name, id, req); err != nil {
		return explainDeploy(fmt.Sprintf("post %s status of deployment %d on %s", st.State, id, repo), err)
	}
	return nil
}

func explainDeploy(what string, err error) error {
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		switch er.Response.StatusCode {
		case http.StatusBadRequest, http.StatusConflict, http.StatusUnprocessableEntity:
			return fmt.Errorf("%s: %w: %w", what, ErrRejected, err)
		case http.StatusNotFound:
			return fmt.Errorf("%s: not found (404): the token needs write access to deployments (or the repo does not exist): %w", what, err)
		}
	}
	var accepted *github.AcceptedError
	if errors.As(err, &accepted) {
		return fmt.Errorf("%s: %w: GitHub queued a merge instead of deploying: %w", what, ErrRejected, err)
	}
	return explain(what, err)
}

// clip cuts s to at most n characters, GitHub's limit for a description.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
