package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
	"github.com/pushdeploy/pushdeploy/internal/sdbus"
	"github.com/pushdeploy/pushdeploy/rollout"
)

// Config says which manager to drive and where its units and journal are.
type Config struct {
	// Bus is the D-Bus address of a user manager; "" is the system manager.
	Bus string
	// User says the manager is a user manager (journalctl --user-unit).
	User bool
	// UnitDir is the directory the manager loads units from (/etc/systemd/system, or
	// $XDG_CONFIG_HOME/systemd/user).
	UnitDir string
	// JournalDir, when set, is read instead of the default journal (journalctl -D).
	JournalDir string
	// Sync, when set, makes the journald that writes JournalDir write out everything it has
	// received, before Journal reads it (SyncJournal with that journald's socket). Nil
	// syncs the host's journal with `journalctl --sync` when JournalDir is empty and this
	// process is root (which that needs), and does nothing otherwise: a failed unit's last
	// lines may then still be on their way.
	Sync func(ctx context.Context) error
}

// Manager drives one systemd manager for the rollout engine. It is safe for concurrent use:
// go-systemd serialises the calls on its connection.
type Manager struct {
	cfg  Config
	conn *sddbus.Conn
}

var _ rollout.Manager = (*Manager)(nil)

// Open connects to the manager cfg names.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	var conn *sddbus.Conn
	var err error
	if cfg.Bus != "" {
		conn, err = sddbus.NewConnection(func() (*dbus.Conn, error) { return sdbus.Dial(cfg.Bus) })
	} else {
		conn, err = sddbus.NewSystemConnectionContext(ctx)
	}
	if err != nil {
		scope := "system"
		if cfg.User {
			scope = "user"
		}
		return nil, fmt.Errorf("connect to the systemd %s manager: %w", scope, err)
	}
	return &Manager{cfg: cfg, conn: conn}, nil
}

// Close closes the connection.
func (m *Manager) Close() error {
	m.conn.Close()
	return nil
}

// Conn is the go-systemd connection, for callers that read more than the engine needs.
func (m *Manager) Conn() *sddbus.Conn { return m.conn }

// Install writes files into the unit directory, removes the named files and the drop-in
// directories they leave empty (an administrator's own override stays, and keeps its
// directory), and reloads the manager.
func (m *Manager) Install(ctx context.Context, files []rollout.File, remove []string) error {
	dir := m.cfg.UnitDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create unit directory: %w", err)
	}
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		if sub := filepath.Dir(path); sub != dir {
			if err := os.Mkdir(sub, 0o755); err == nil {
				if err := atomicfile.SyncDir(dir); err != nil {
					return err
				}
			} else if !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("create drop-in directory: %w", err)
			}
		}
		if err := atomicfile.Write(path, []byte(f.Content), 0o644); err != nil {
			return err
		}
	}
	if err := m.remove(remove); err != nil {
		return err
	}
	if err := m.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("reload systemd: %w", err)
	}
	return nil
}

func (m *Manager) remove(names []string) error {
	dir := m.cfg.UnitDir
	var errs []error
	dirs := map[string]bool{}
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if d := filepath.Dir(name); d != "." {
			dirs[d] = true
		}
	}
	for d := range dirs {
		if ents, err := os.ReadDir(filepath.Join(dir, d)); err == nil && len(ents) == 0 {
			if err := os.Remove(filepath.Join(dir, d)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(names) > 0 {
		errs = append(errs, atomicfile.SyncDir(dir))
	}
	return errors.Join(errs...)
}

// Start resets unit's failed state and start limit, then starts it and waits for the job.
func (m *Manager) Start(ctx context.Context, unit string) error {
	if err := m.resetFailed(ctx, unit); err != nil {
		return err
	}
	return m.job(ctx, "start", m.conn.StartUnitContext, unit)
}

// Restart resets unit's failed state and start limit, then restarts it and waits for the
// job.
func (m *Manager) Restart(ctx context.Context, unit string) error {
	if err := m.resetFailed(ctx, unit); err != nil {
		return err
	}
	return m.job(ctx, "restart", m.conn.RestartUnitContext, unit)
}

// Stop stops unit, waits for it, and resets its failed state. A unit the manager does not
// know is stopped already.
func (m *Manager) Stop(ctx context.Context, unit string) error {
	if err := m.job(ctx, "stop", m.conn.StopUnitContext, unit); err != nil && !sdbus.NoSuchUnit(err) {
		return err
	}
	return m.resetFailed(ctx, unit)
}

// Enable enables target from the unit directory.
func (m *Manager) Enable(ctx context.Context, target string) error {
	if _, _, err := m.conn.EnableUnitFilesContext(ctx, []string{filepath.Join(m.cfg.UnitDir, target)}, false, true); err != nil {
		return fmt.Errorf("enable %s: %w", target, err)
	}
	if err := m.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("reload systemd: %w", err)
	}
	return nil
}

// Disable removes the symlinks that enable target.
func (m *Manager) Disable(ctx context.Context, target string) error {
	if _, err := m.conn.DisableUnitFilesContext(ctx, []string{target}, false); err != nil {
		return fmt.Errorf("disable %s: %w", target, err)
	}
	return nil
}

// State reads unit's ActiveState, SubState and ActiveEnterTimestamp, and its service's
// Result, NRestarts and MainPID.
func (m *Manager) State(ctx context.Context, unit string) (rollout.UnitState, error) {
	p, err := m.conn.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return rollout.UnitState{}, fmt.Errorf("read state of %s: %w", unit, err)
	}
	sp, err := m.conn.GetUnitTypePropertiesContext(ctx, unit, "Service")
	if err != nil {
		return rollout.UnitState{}, fmt.Errorf("read service state of %s: %w", unit, err)
	}
	st := rollout.UnitState{}
	st.ActiveState, _ = p["ActiveState"].(string)
	st.SubState, _ = p["SubState"].(string)
	st.Result, _ = sp["Result"].(string)
	st.NRestarts, _ = sp["NRestarts"].(uint32)
	st.MainPID, _ = sp["MainPID"].(uint32)
	if us, _ := p["ActiveEnterTimestamp"].(uint64); us > 0 {
		st.Since = time.UnixMicro(int64(us))
	}
	return st, nil
}

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// job queues one job for unit and waits for its result: one that is not "done" is a
// *rollout.JobError.
func (m *Manager) job(ctx context.Context, op string, f jobFunc, unit string) error {
	ch := make(chan string, 1) // buffered: go-systemd sends while holding its job lock
	if _, err := f(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", op, unit, err)
	}
	select {
	case r := <-ch:
		if r != "done" {
			return &rollout.JobError{Op: op, Unit: unit, Result: r}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", op, unit, context.Cause(ctx))
	}
}

// resetFailed resets unit's failed state and start limit; a unit not loaded has neither.
func (m *Manager) resetFailed(ctx context.Context, unit string) error {
	if err := m.conn.ResetFailedUnitContext(ctx, unit); err != nil && !sdbus.NoSuchUnit(err) {
		return fmt.Errorf("reset failed state of %s: %w", unit, err)
	}
	return nil
}

// Journal returns unit's last n journal lines, oldest first (sdbus.Journal says how they
// are found for a user manager's unit).
func (m *Manager) Journal(ctx context.Context, unit string, n int) ([]string, error) {
	return sdbus.Journal(ctx, m.conn, sdbus.JournalConfig{User: m.cfg.User, Dir: m.cfg.JournalDir, Sync: m.cfg.Sync}, unit, n)
}
