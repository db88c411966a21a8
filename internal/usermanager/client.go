package usermanager

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/pushdeploy/pushdeploy/internal/sdbus"
)

// Conn returns a new go-systemd connection to the manager; the caller closes it (before
// Stop). It is built explicitly like go-systemd's NewUserConnectionContext, whose only
// difference is that it finds the bus through the process environment, which a test
// running in parallel with others must not change: dial BusAddress, authenticate with
// EXTERNAL as our uid (no user name lookup, no cookie file in HOME, as go-systemd does),
// then Hello (sdbus.Dial).
func (m *Manager) Conn() (*sddbus.Conn, error) {
	conn, err := sddbus.NewConnection(func() (*dbus.Conn, error) { return sdbus.Dial(m.BusAddress) })
	if err != nil {
		return nil, fmt.Errorf("connect to systemd user manager at %s: %w", m.BusAddress, err)
	}
	return conn, nil
}

// Command returns a command (systemctl, systemd-run, systemd-analyze, …) with Env added to
// this process's environment, so `systemctl --user` talks to this manager.
func (m *Manager) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), m.Env...)
	return cmd
}

// JournalLines returns the last n journal messages of unit, oldest first, as `journalctl
// --user -u UNIT -n N -o cat` would show them: the unit's stdout and stderr and the
// manager's lines about it, such as "web.service: Main process exited, code=exited,
// status=3/NOTIMPLEMENTED". It reads them as the agent does, with sdbus.Journal,
// which first makes journald write out everything it has received (SyncJournal)
// and also takes the lines a process that exited at once left without a unit (its doc
// says how).
func (m *Manager) JournalLines(ctx context.Context, unit string, n int) ([]string, error) {
	conn, err := m.Conn()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return sdbus.Journal(ctx, conn, sdbus.JournalConfig{User: true, Dir: m.JournalDir, Sync: m.SyncJournal}, unit, n)
}

// SyncJournal asks the manager's journald to write out everything it has received (the
// varlink call behind `journalctl --sync`, sdbus.SyncJournal). Its socket is in the
// private /run/systemd, reached through the launcher's root in /proc.
func (m *Manager) SyncJournal(ctx context.Context) error {
	return sdbus.SyncJournal(ctx, fmt.Sprintf("/proc/%d/root/run/systemd/journal/io.systemd.journal", m.PID()))
}
