package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-github/v92/github"

	"github.com/pushdeploy/pushdeploy/internal/abbrev"
)

// zeroSHA is what git and GitHub put in place of a commit that does not exist: before a ref
// was created, or after it was deleted.
const zeroSHA = "0000000000000000000000000000000000000000"

// Push is the part of a push event the agent needs.
type Push struct {
	Repo          string // repository.full_name, e.g. "octo-org/octo-repo"
	Ref           string // full ref, e.g. refs/heads/deploy-production
	Branch        string // "deploy-production" when Ref is a branch, else ""
	Tag           string // tag name when Ref is a tag, else ""
	Before, After string // 40-hex, lowercase; After is all zeros when the ref was deleted
	Created       bool   // the ref did not exist before (payload says so, or Before is all zeros)
	Deleted       bool   // the ref no longer exists (payload says so, or After is all zeros)
	Forced        bool   // the push was not a fast-forward
	Pusher        string // pusher.name
	HeadMessage   string // head_commit.message, first line only
}

// ParsePush parses a push event payload. It checks what the agent relies on to deploy exactly
// the pushed commit, so that a malformed payload is refused with a 400 naming the field instead
// of failing later in a fetch.
//
// Errors are *Error with Status 400, e.g. `after: must be 40 hex digits, got "xyz"`,
// `repository.full_name: missing`, `ref: missing`.
func ParsePush(payload []byte) (*Push, error) {
	v, err := github.ParseWebHook("push", payload)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Msg: "body: not a push event: " + err.Error(), err: err}
	}
	ev, ok := v.(*github.PushEvent)
	if !ok { // go-github maps "push" to *PushEvent; anything else is a library change
		return nil, refuse(http.StatusBadRequest, "body: not a push event (parsed as %T)", v)
	}
	p := &Push{
		Repo:        ev.GetRepo().GetFullName(),
		Ref:         ev.GetRef(),
		Forced:      ev.GetForced(),
		Pusher:      ev.GetPusher().GetName(),
		HeadMessage: abbrev.FirstLine(ev.GetHeadCommit().GetMessage()),
	}
	if p.Repo == "" {
		return nil, refuse(http.StatusBadRequest, "repository.full_name: missing")
	}
	if err := checkRef(p.Ref); err != nil {
		return nil, refuse(http.StatusBadRequest, "ref: %v", err)
	}
	p.Branch, _ = strings.CutPrefix(p.Ref, "refs/heads/")
	if p.Branch == p.Ref {
		p.Branch = ""
	}
	p.Tag, _ = strings.CutPrefix(p.Ref, "refs/tags/")
	if p.Tag == p.Ref {
		p.Tag = ""
	}
	if p.Before, err = checkSHA(ev.Before); err != nil {
		return nil, refuse(http.StatusBadRequest, "before: %v", err)
	}
	if p.After, err = checkSHA(ev.After); err != nil {
		return nil, refuse(http.StatusBadRequest, "after: %v", err)
	}
	// Trust the SHAs as well as the flags: a deleted ref has nothing to deploy whatever the
	// payload's booleans say, and a post-receive sender may not set them.
	p.Created = ev.GetCreated() || p.Before == zeroSHA
	p.Deleted = ev.GetDeleted() || p.After == zeroSHA
	return p, nil
}

// checkRef accepts full ref names only: a short name such as "main" is ambiguous between a
// branch and a tag, and deploying the wrong one is worse than refusing.
func checkRef(ref string) error {
	switch {
	case ref == "":
		return errors.New("missing")
	case !strings.HasPrefix(ref, "refs/") || len(ref) == len("refs/"):
		return fmt.Errorf("must be a full ref like refs/heads/main, got %q", ref)
	case strings.ContainsAny(ref, " \t\r\n\x00"):
		return fmt.Errorf("contains white space or NUL, got %q", ref)
	}
	return nil
}

// checkSHA returns s lowercased when it is 40 hex digits, so that the agent compares and stores
// one spelling of each commit.
func checkSHA(s *string) (string, error) {
	if s == nil || *s == "" {
		return "", errors.New("missing")
	}
	if !isSHA(*s) {
		return "", fmt.Errorf("must be 40 hex digits, got %q", truncate(*s, 64))
	}
	return strings.ToLower(*s), nil
}

func isSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// truncate keeps error messages short when a sender puts something huge in a field.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// PushInput is one ref update on a plain git server, to be turned into a push payload.
type PushInput struct {
	Repo, Ref, Before, After, Pusher, HeadMessage string
	HeadTime                                      time.Time // zero leaves head_commit.timestamp out
}

// The payload types below carry only the documented push fields a plain git server can fill;
// go-github's PushEvent is not used because its omitempty tags would drop created/deleted/
// forced when false and commits when empty, which GitHub always sends.
type pushPayload struct {
	Ref        string        `json:"ref"`
	Before     string        `json:"before"`
	After      string        `json:"after"`
	Created    bool          `json:"created"`
	Deleted    bool          `json:"deleted"`
	Forced     bool          `json:"forced"`
	Compare    string        `json:"compare"`
	Commits    []headCommit  `json:"commits"`
	HeadCommit *headCommit   `json:"head_commit"`
	Repository payloadRepo   `json:"repository"`
	Pusher     payloadPerson `json:"pusher"`
}

type headCommit struct {
	ID        string `json:"id"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp,omitempty"`
}

type payloadRepo struct {
	Name     string       `json:"name"`
	FullName string       `json:"full_name"`
	Owner    payloadOwner `json:"owner"`
}

type payloadOwner struct {
	Name  string `json:"name"`
	Login string `json:"login"`
}

type payloadPerson struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// PushPayload builds a GitHub-format push payload for a plain git server, so that the agent
// handles its pushes exactly like GitHub's. It fills the fields GitHub documents: ref, before,
// after, created, deleted, forced (always false: post-receive cannot tell cheaply), compare "",
// commits [], head_commit (id, message, timestamp) unless the ref was deleted, repository
// {name, full_name, owner{name, login}} and pusher {name, email ""}.
//
// It refuses input the agent would refuse: a repo not of the form owner/name, a short ref,
// SHAs that are not 40 hex digits, or both SHAs zero.
func PushPayload(in PushInput) ([]byte, error) {
	owner, name, ok := strings.Cut(in.Repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("build push payload: repo: must be owner/name, got %q", in.Repo)
	}
	if err := checkRef(in.Ref); err != nil {
		return nil, fmt.Errorf("build push payload: ref: %w", err)
	}
	before, err := checkSHA(&in.Before)
	if err != nil {
		return nil, fmt.Errorf("build push payload: before: %w", err)
	}
	after, err := checkSHA(&in.After)
	if err != nil {
		return nil, fmt.Errorf("build push payload: after: %w", err)
	}
	if before == zeroSHA && after == zeroSHA {
		return nil, errors.New("build push payload: before and after are both all zeros")
	}
	p := pushPayload{
		Ref:        in.Ref,
		Before:     before,
		After:      after,
		Created:    before == zeroSHA,
		Deleted:    after == zeroSHA,
		Commits:    []headCommit{},
		Repository: payloadRepo{Name: name, FullName: in.Repo, Owner: payloadOwner{Name: owner, Login: owner}},
		Pusher:     payloadPerson{Name: in.Pusher},
	}
	if !p.Deleted {
		p.HeadCommit = &headCommit{ID: after, Message: in.HeadMessage}
		if !in.HeadTime.IsZero() {
			p.HeadCommit.Timestamp = in.HeadTime.Format(time.RFC3339)
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("build push payload: %w", err)
	}
	return b, nil
}
