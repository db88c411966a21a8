package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
	"github.com/pushdeploy/pushdeploy/state"
)

// localLockPoll is how often a deploy waiting for a host's own lock file looks again.
const localLockPoll = 250 * time.Millisecond

// Without etcd the deploy lock is a file per app on the host (datadir's Lock): the CLI
// writes and removes it, the agent reads it before each deploy of a pushed commit and
// while one waits.

// LocalLock returns app's deploy lock on this host, nil when it is not locked.
func LocalLock(cfg *config.Config, app string) (*fleet.Lock, error) {
	if _, ok := cfg.Apps[app]; !ok {
		return nil, fmt.Errorf("app %q: %w", app, state.ErrNotFound)
	}
	data, err := os.ReadFile(cfg.Layout().Lock(app))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lock of %s: %w", app, err)
	}
	l := &fleet.Lock{App: app}
	if err := json.Unmarshal(data, l); err != nil {
		return nil, fmt.Errorf("read lock of %s: %w", app, err)
	}
	return l, nil
}

// SetLocalLock locks app's deploys on this host. If it is locked already, it returns that
// lock and an error wrapping fleet.ErrLocked.
func SetLocalLock(cfg *config.Config, app string, l fleet.Lock) (*fleet.Lock, error) {
	held, err := LocalLock(cfg, app)
	if err != nil {
		return nil, err
	}
	if held != nil {
		return held, fmt.Errorf("lock %s: %w %s", app, fleet.ErrLocked, held)
	}
	data, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Layout().App(app), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", app, err)
	}
	// Written whole beside it, then linked into place: a link fails if another lock got
	// there first.
	p := cfg.Layout().Lock(app)
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	if err := atomicfile.Write(tmp, data, 0o644); err != nil {
		return nil, fmt.Errorf("lock %s: %w", app, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); errors.Is(err, os.ErrExist) {
		held, _ := LocalLock(cfg, app)
		return held, fmt.Errorf("lock %s: %w", app, fleet.ErrLocked)
	} else if err != nil {
		return nil, fmt.Errorf("lock %s: %w", app, err)
	}
	return nil, atomicfile.SyncDir(filepath.Dir(p))
}

// RemoveLocalLock unlocks app's deploys on this host and returns the lock it removed, nil
// when it was not locked.
func RemoveLocalLock(cfg *config.Config, app string) (*fleet.Lock, error) {
	held, err := LocalLock(cfg, app)
	if err != nil || held == nil {
		return nil, err
	}
	if err := os.Remove(cfg.Layout().Lock(app)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("unlock %s: %w", app, err)
	}
	return held, nil
}

// waitLocalLock waits while the app's lock file exists, telling say why, until ctx ends.
func (a *Agent) waitLocalLock(ctx context.Context, ap *app, say func(string)) error {
	last := ""
	for {
		l, err := LocalLock(a.cfg, ap.cfg.Name())
		var reason string
		switch {
		case err != nil:
			reason = "lock unreadable: " + err.Error()
		case l == nil:
			return nil
		default:
			reason = "locked: " + l.String()
		}
		if reason != last {
			say(reason)
			last = reason
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(localLockPoll):
		}
	}
}
