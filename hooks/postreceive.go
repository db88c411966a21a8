package hooks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// ParsePostReceive reads git post-receive stdin lines "<old> <new> <ref>" from r and returns one
// PushInput per line, with Repo set to repo. Pusher, HeadMessage and HeadTime are left for the
// caller, which knows who pushed and can ask git about the new commit. Blank lines are skipped;
// any other malformed line is an error naming its line number, and nothing is returned, so a
// hook never delivers half of a push.
func ParsePostReceive(r io.Reader, repo string) ([]PushInput, error) {
	var ins []PushInput
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		in, err := parseUpdate(line)
		if err != nil {
			return nil, fmt.Errorf("read post-receive input: line %d: %w", n, err)
		}
		in.Repo = repo
		ins = append(ins, in)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read post-receive input: line %d: %w", n+1, err)
	}
	return ins, nil
}

func parseUpdate(line string) (PushInput, error) {
	f := strings.Split(line, " ")
	if len(f) != 3 {
		return PushInput{}, fmt.Errorf("want \"<old-sha> <new-sha> <ref>\", got %q", truncate(line, 200))
	}
	if !isSHA(f[0]) {
		return PushInput{}, fmt.Errorf("old: must be 40 hex digits, got %q", truncate(f[0], 64))
	}
	if !isSHA(f[1]) {
		return PushInput{}, fmt.Errorf("new: must be 40 hex digits, got %q", truncate(f[1], 64))
	}
	if err := checkRef(f[2]); err != nil {
		return PushInput{}, fmt.Errorf("ref: %w", err)
	}
	if f[0] == zeroSHA && f[1] == zeroSHA {
		return PushInput{}, errors.New("old and new are both all zeros")
	}
	return PushInput{Ref: f[2], Before: strings.ToLower(f[0]), After: strings.ToLower(f[1])}, nil
}

// RepoFromGitDir derives "owner/name" from a repository path, so a post-receive hook can name
// the repository the way GitHub would without configuration: the last two path elements, with
// ".git" removed, e.g. /srv/git/acme/web.git → "acme/web", /x/web → "x/web". For a non-bare
// repository's .git directory (/src/acme/web/.git) the working tree's path is used. A path with
// a single element gives just the name, which PushPayload refuses.
func RepoFromGitDir(path string) string {
	p := filepath.ToSlash(filepath.Clean(path))
	if filepath.Base(p) == ".git" {
		p = filepath.Dir(p)
	}
	name := strings.TrimSuffix(filepath.Base(p), ".git")
	owner := filepath.Base(filepath.Dir(p))
	if owner == "/" || owner == "." || owner == "" {
		return name
	}
	return owner + "/" + name
}
