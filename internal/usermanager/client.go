package usermanager

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Conn returns a new go-systemd connection to the manager; the caller closes it (before
// Stop). It is built explicitly like go-systemd's NewUserConnectionContext, whose only
// difference is that it finds the bus through the process environment, which a test
// running in parallel with others must not change: dial BusAddress, authenticate with
// EXTERNAL as our uid (no user name lookup, no cookie file in HOME, as go-systemd does),
// then Hello.
func (m *Manager) Conn() (*sddbus.Conn, error) {
	conn, err := sddbus.NewConnection(func() (*dbus.Conn, error) { return dialBus(m.BusAddress) })
	if err != nil {
		return nil, fmt.Errorf("connect to systemd user manager at %s: %w", m.BusAddress, err)
	}
	return conn, nil
}

func dialBus(addr string) (*dbus.Conn, error) {
	c, err := dbus.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		c.Close()
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if err := c.Hello(); err != nil {
		c.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	return c, nil
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
// status=3/NOTIMPLEMENTED". It first makes journald write out everything it has received,
// so the lines of a unit that just failed are there.
//
// journald tells which unit a line comes from by the sender's cgroup, read when it
// processes the line. A process that exited by then (a command that fails at once) leaves
// lines without a unit, and a user manager, unlike the system one, does not name the unit
// in the stream either: `journalctl --user -u` misses them (seen here in about one run in
// ten). JournalLines also takes the lines without a unit whose _PID is the unit's last main
// process (ExecMainPID), so the output of the last run is complete; lines of other
// processes of the unit that exited that early stay unattributed.
func (m *Manager) JournalLines(ctx context.Context, unit string, n int) ([]string, error) {
	if err := m.syncJournal(); err != nil {
		return nil, fmt.Errorf("sync journal: %w", err)
	}
	out, err := m.Command(ctx, "systemctl", "--user", "--no-pager", "show", "--property=ExecMainPID", "--value", unit).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("systemctl --user show %s: %w\n%s", unit, err, out)
	}
	mainPID := strings.TrimSpace(string(out))
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "journalctl", "-D", m.JournalDir,
		"-o", "json", "--output-fields=MESSAGE,_PID,_SYSTEMD_USER_UNIT,USER_UNIT", "--no-pager", "-q")
	cmd.Stderr = &stderr
	if out, err = cmd.Output(); err != nil {
		return nil, fmt.Errorf("journalctl -D %s: %w\n%s", m.JournalDir, err, stderr.Bytes())
	}
	var lines []string
	for line := range bytes.Lines(out) {
		var e map[string]json.RawMessage
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("journal entry %q: %w", line, err)
		}
		field := func(k string) string { return journalString(e[k]) }
		_, attributed := e["_SYSTEMD_USER_UNIT"]
		if field("_SYSTEMD_USER_UNIT") == unit || field("USER_UNIT") == unit ||
			(!attributed && mainPID != "0" && field("_PID") == mainPID) {
			lines = append(lines, field("MESSAGE"))
		}
	}
	return lines[max(0, len(lines)-n):], nil
}

// journalString decodes a journal JSON field: a string, or an array of bytes when the
// value is not valid UTF-8.
func journalString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var b []byte
	var ints []int
	if json.Unmarshal(raw, &ints) == nil {
		for _, i := range ints {
			b = append(b, byte(i))
		}
	}
	return string(b)
}

// syncJournal asks the manager's journald to write out everything it has received (the
// varlink call behind `journalctl --sync`). Its socket is in the private /run/systemd,
// reached through the launcher's root in /proc.
func (m *Manager) syncJournal() error {
	path := fmt.Sprintf("/proc/%d/root/run/systemd/journal/io.systemd.journal", m.PID())
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(`{"method":"io.systemd.Journal.Synchronize","parameters":{}}` + "\x00")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(c).ReadBytes(0)
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	var r struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(reply[:len(reply)-1], &r); err != nil {
		return fmt.Errorf("reply %q: %w", reply, err)
	}
	if r.Error != "" {
		return fmt.Errorf("journald: %s", r.Error)
	}
	return nil
}
