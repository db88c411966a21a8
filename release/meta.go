package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
	"github.com/pushdeploy/pushdeploy/internal/datadir"
)

// Mark is the verdict on a release: good once it has run healthy, bad when it failed.
// Retention and rollback use it so that a failed release never pushes out the last good one.
type Mark string

// The marks a release can carry.
const (
	Unmarked Mark = ""
	Good     Mark = "good"
	Bad      Mark = "bad"
)

// Release describes one release directory.
type Release struct {
	SHA      string    `json:"sha"`
	Branch   string    `json:"branch,omitempty"`
	Deploy   string    `json:"deploy,omitempty"`
	Created  time.Time `json:"created"`
	Mark     Mark      `json:"mark,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	MarkedAt time.Time `json:"marked_at,omitzero"`
	Current  bool      `json:"current"`
	Dir      string    `json:"dir"`
}

func (s *Store) writeMeta(app string, r Release) error {
	r.Current, r.Dir = false, ""
	if err := s.dirs.MkdirAll(filepath.Dir(s.dirs.Meta(app, r.SHA))); err != nil {
		return fmt.Errorf("write release metadata: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write release metadata: %w", err)
	}
	return atomicfile.Write(s.dirs.Meta(app, r.SHA), append(data, '\n'), datadir.ModePrivateFile)
}

// release reads what is known of one existing release.
func (s *Store) release(app, sha string) (Release, error) {
	dir := s.ReleaseDir(app, sha)
	fi, err := os.Lstat(dir)
	if err != nil {
		return Release{}, fmt.Errorf("release %.12s of %s: %w", sha, app, err)
	}
	r := Release{SHA: sha, Created: fi.ModTime().UTC()}
	if data, err := os.ReadFile(s.dirs.Meta(app, sha)); err == nil {
		if err := json.Unmarshal(data, &r); err != nil {
			return Release{}, fmt.Errorf("read metadata of release %.12s: %w", sha, err)
		}
	}
	cur, err := s.Current(app)
	if err != nil {
		return Release{}, err
	}
	r.Current = cur == sha
	r.Dir = dir
	return r, nil
}

// List returns app's releases, newest first.
func (s *Store) List(app string) ([]Release, error) {
	ents, err := os.ReadDir(s.dirs.Releases(app))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list releases of %s: %w", app, err)
	}
	var out []Release
	for _, e := range ents {
		if isTemp(e.Name()) || !ValidSHA(e.Name()) {
			continue
		}
		r, err := s.release(app, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// SetMark records the verdict on a release, with the reason for a bad one.
func (s *Store) SetMark(app, sha string, m Mark, reason string) error {
	r, err := s.release(app, sha)
	if err != nil {
		return err
	}
	r.Mark, r.Reason, r.MarkedAt = m, reason, time.Now().UTC()
	return s.writeMeta(app, r)
}

// Current returns the sha of app's live release, or "" before the first deploy.
func (s *Store) Current(app string) (string, error) {
	target, err := os.Readlink(s.dirs.Current(app))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read current release of %s: %w", app, err)
	}
	sha := filepath.Base(target)
	if !ValidSHA(sha) || target != s.dirs.CurrentTarget(sha) {
		return "", fmt.Errorf("read current release of %s: unexpected link target %q", app, target)
	}
	return sha, nil
}

// Activate points app's current link at release sha in one rename, and returns the sha it
// pointed at before ("" if none).
func (s *Store) Activate(app, sha string) (previous string, err error) {
	if _, err := os.Stat(s.ReleaseDir(app, sha)); err != nil {
		return "", fmt.Errorf("activate %.12s: %w", sha, err)
	}
	previous, err = s.Current(app)
	if err != nil {
		return "", err
	}
	if err := atomicfile.Symlink(s.dirs.CurrentTarget(sha), s.dirs.Current(app)); err != nil {
		return "", fmt.Errorf("activate %.12s: %w", sha, err)
	}
	return previous, nil
}
