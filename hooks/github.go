package hooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v92/github"
)

// Conditions a caller of [GitHub]'s methods may branch on; the errors returned wrap one of
// them, together with GitHub's own error, and say what to do.
var (
	ErrUnauthorized = errors.New("GitHub rejected the token (401): check GITHUB_TOKEN or --token-file, and that the token has not expired")
	ErrNoAccess     = errors.New("not found (404): the token needs admin rights on repository hooks (or the repo does not exist)")
	ErrRateLimited  = errors.New("rate limited by GitHub")
	ErrHookExists   = errors.New("GitHub says a hook with this URL already exists (422): it differs from --url in a way GitHub ignores (case, trailing slash); run `pushdeploy hooks list` and remove or reuse it")
	ErrHookNotFound = errors.New("no such hook")
	// ErrServerError marks an answer 5xx: GitHub (or a proxy before it) failed; the same
	// request may succeed later.
	ErrServerError = errors.New("GitHub failed to answer")
)

// Hook actions reported by [GitHub.Ensure].
const (
	HookCreated   = "created"
	HookUpdated   = "updated"
	HookUnchanged = "unchanged"
)

// listPageSize is how many hooks each list request asks for (GitHub's maximum is 100).
const listPageSize = 100

// GitHub manages a repository's push webhook and deployments through GitHub's REST API.
type GitHub struct {
	client *github.Client
}

// NewGitHub returns a client authenticated with token. apiURL is empty for github.com, or the
// URL of a GitHub Enterprise Server ("https://ghe.example.com", with or without /api/v3/).
func NewGitHub(token, apiURL string) (*GitHub, error) {
	opts := []github.ClientOptionsFunc{github.WithTimeout(30 * time.Second)}
	if apiURL != "" {
		opts = append(opts, github.WithEnterpriseURLs(apiURL, apiURL))
	}
	return newGitHub(token, opts...)
}

func newGitHub(token string, opts ...github.ClientOptionsFunc) (*GitHub, error) {
	if token == "" {
		return nil, errors.New("GitHub token: missing")
	}
	c, err := github.NewClient(append([]github.ClientOptionsFunc{github.WithAuthToken(token)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("GitHub client: %w", err)
	}
	return &GitHub{client: c}, nil
}

// HookSpec is the push webhook a repository should have.
type HookSpec struct {
	URL         string
	Secret      string
	InsecureSSL bool // GitHub skips TLS verification when delivering
}

// HookResult is what [GitHub.Ensure] did.
type HookResult struct {
	Action string `json:"action"` // HookCreated, HookUpdated or HookUnchanged
	ID     int64  `json:"id"`
	URL    string `json:"url"`
}

// HookInfo is one hook as GitHub shows it (GitHub never shows the secret).
type HookInfo struct {
	ID          int64    `json:"id"`
	URL         string   `json:"url"`
	Active      bool     `json:"active"`
	Events      []string `json:"events"`
	ContentType string   `json:"content_type"`
	InsecureSSL bool     `json:"insecure_ssl"`
}

// SplitRepo splits "owner/name".
func SplitRepo(repo string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("repository: want OWNER/REPO, got %q", repo)
	}
	return owner, name, nil
}

// Ensure makes repo have exactly one hook delivering pushes to spec.URL, found by its exact
// config URL among all the repository's hooks. Outcomes:
//   - HookCreated: there was none; it was created with spec's secret.
//   - HookUpdated: it was inactive, did not send push events, did not send JSON or had another
//     TLS setting, or rotate was set; it was edited, and its secret set to spec's.
//   - HookUnchanged: it was already right. GitHub never shows a secret, so a changed secret
//     goes unnoticed: pass rotate to set it.
func (g *GitHub) Ensure(ctx context.Context, repo string, spec HookSpec, rotate bool) (HookResult, error) {
	owner, name, err := SplitRepo(repo)
	if err != nil {
		return HookResult{}, err
	}
	if spec.URL == "" || spec.Secret == "" {
		return HookResult{}, errors.New("ensure hook: URL and secret are required")
	}
	all, err := g.listHooks(ctx, owner, name)
	if err != nil {
		return HookResult{}, err
	}
	insecure := "0"
	if spec.InsecureSSL {
		insecure = "1"
	}
	want := &github.Hook{
		Config: &github.HookConfig{
			URL:         new(spec.URL),
			ContentType: new("json"),
			InsecureSSL: new(insecure),
			Secret:      new(spec.Secret),
		},
		Events: []string{"push"},
		Active: new(true),
	}
	for _, h := range all {
		if h.GetConfig().GetURL() != spec.URL {
			continue
		}
		cfg := h.GetConfig()
		if !rotate && h.GetActive() && slices.Contains(h.Events, "push") &&
			cfg.GetContentType() == "json" && cfg.GetInsecureSSL() == insecure {
			return HookResult{Action: HookUnchanged, ID: h.GetID(), URL: spec.URL}, nil
		}
		// Events the hook already sends stay; push is added.
		if !slices.Contains(h.Events, "push") {
			want.Events = append(slices.Clone(h.Events), "push")
		} else {
			want.Events = h.Events
		}
		if _, _, err := g.client.Repositories.EditHook(ctx, owner, name, h.GetID(), want); err != nil {
			return HookResult{}, explain(fmt.Sprintf("edit hook %d of %s", h.GetID(), repo), err)
		}
		return HookResult{Action: HookUpdated, ID: h.GetID(), URL: spec.URL}, nil
	}
	want.Name = new("web")
	h, _, err := g.client.Repositories.CreateHook(ctx, owner, name, want)
	if err != nil {
		return HookResult{}, explain("create hook on "+repo, err)
	}
	return HookResult{Action: HookCreated, ID: h.GetID(), URL: spec.URL}, nil
}

// List returns all of repo's hooks, across all pages.
func (g *GitHub) List(ctx context.Context, repo string) ([]HookInfo, error) {
	owner, name, err := SplitRepo(repo)
	if err != nil {
		return nil, err
	}
	all, err := g.listHooks(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	out := make([]HookInfo, 0, len(all))
	for _, h := range all {
		out = append(out, HookInfo{
			ID:          h.GetID(),
			URL:         h.GetConfig().GetURL(),
			Active:      h.GetActive(),
			Events:      h.Events,
			ContentType: h.GetConfig().GetContentType(),
			InsecureSSL: h.GetConfig().GetInsecureSSL() == "1",
		})
	}
	return out, nil
}

// Remove deletes repo's hook named by urlOrID: its numeric id, or its exact config URL.
// It returns the id removed, or an error wrapping ErrHookNotFound.
func (g *GitHub) Remove(ctx context.Context, repo, urlOrID string) (int64, error) {
	owner, name, id, err := g.resolve(ctx, repo, urlOrID)
	if err != nil {
		return 0, err
	}
	if _, err := g.client.Repositories.DeleteHook(ctx, owner, name, id); err != nil {
		return 0, explainHook(fmt.Sprintf("remove hook %d of %s", id, repo), err)
	}
	return id, nil
}

// Ping asks GitHub to send repo's hook named by urlOrID (id or exact URL) a ping event.
func (g *GitHub) Ping(ctx context.Context, repo, urlOrID string) (int64, error) {
	owner, name, id, err := g.resolve(ctx, repo, urlOrID)
	if err != nil {
		return 0, err
	}
	if _, err := g.client.Repositories.PingHook(ctx, owner, name, id); err != nil {
		return 0, explainHook(fmt.Sprintf("ping hook %d of %s", id, repo), err)
	}
	return id, nil
}

// resolve turns an id or URL into a hook id; a URL is looked up across all pages.
func (g *GitHub) resolve(ctx context.Context, repo, urlOrID string) (owner, name string, id int64, err error) {
	owner, name, err = SplitRepo(repo)
	if err != nil {
		return "", "", 0, err
	}
	if id, err := strconv.ParseInt(urlOrID, 10, 64); err == nil && id > 0 {
		return owner, name, id, nil
	}
	all, err := g.listHooks(ctx, owner, name)
	if err != nil {
		return "", "", 0, err
	}
	for _, h := range all {
		if h.GetConfig().GetURL() == urlOrID {
			return owner, name, h.GetID(), nil
		}
	}
	return "", "", 0, fmt.Errorf("find hook %s on %s: %w (see `pushdeploy hooks list %s`)", urlOrID, repo, ErrHookNotFound, repo)
}

// listHooks follows the Link headers through every page.
func (g *GitHub) listHooks(ctx context.Context, owner, name string) ([]*github.Hook, error) {
	var all []*github.Hook
	opt := &github.ListOptions{PerPage: listPageSize}
	for {
		page, resp, err := g.client.Repositories.ListHooks(ctx, owner, name, opt)
		if err != nil {
			return nil, explain("list hooks of "+owner+"/"+name, err)
		}
		all = append(all, page...)
		if resp.NextPage == 0 {
			return all, nil
		}
		opt.Page = resp.NextPage
	}
}

// explainHook is explain for calls on one hook, where a 404 may just mean the hook is gone.
func explainHook(what string, err error) error {
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: %w, or the token needs admin rights on repository hooks: %w", what, ErrHookNotFound, err)
	}
	return explain(what, err)
}

// explain wraps a GitHub error with the condition it is and what to do about it.
func explain(what string, err error) error {
	var rl *github.RateLimitError
	if errors.As(err, &rl) {
		reset := rl.Rate.Reset.Time
		return fmt.Errorf("%s: %w (%d requests per hour): retry after %s: %w", what, ErrRateLimited,
			rl.Rate.Limit, reset.Local().Format(time.RFC3339), err)
	}
	var abuse *github.AbuseRateLimitError
	if errors.As(err, &abuse) {
		after := "a few minutes"
		if abuse.RetryAfter != nil {
			after = time.Now().Add(*abuse.RetryAfter).Local().Format(time.RFC3339)
		}
		return fmt.Errorf("%s: %w (secondary limit): retry after %s: %w", what, ErrRateLimited, after, err)
	}
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		switch er.Response.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%s: %w: %w", what, ErrUnauthorized, err)
		case http.StatusNotFound:
			return fmt.Errorf("%s: %w: %w", what, ErrNoAccess, err)
		case http.StatusUnprocessableEntity:
			for _, e := range er.Errors {
				if strings.Contains(strings.ToLower(e.Message), "hook already exists") {
					return fmt.Errorf("%s: %w: %w", what, ErrHookExists, err)
				}
			}
		}
		if er.Response.StatusCode >= 500 {
			// go-github's text of an answer without a JSON body is only the code.
			return fmt.Errorf("%s: %w (%s): %w", what, ErrServerError, er.Response.Status, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
