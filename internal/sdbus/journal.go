package sdbus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// JournalConfig says where a manager's journal is.
type JournalConfig struct {
	// User says the units are a user manager's.
	User bool
	// Dir, when set, is read instead of the host's journal (journalctl -D).
	Dir string
	// Sync, when set, makes the journald that writes Dir write out everything it has
	// received before Journal reads it (SyncJournal with that journald's socket). Nil
	// syncs the host's journal when Dir is empty and we are root, and nothing otherwise.
	Sync func(ctx context.Context) error
}

// Journal returns unit's last n journal messages, oldest first: its processes' output and
// the manager's lines about it ("Main process exited, code=exited, status=3/NOTIMPLEMENTED"),
// as `journalctl -u UNIT -n N -o cat` shows them for a system unit. It first syncs the
// journal (JournalConfig.Sync), so the lines of a unit that has just failed are there.
//
// A user manager's unit needs more than `journalctl --user-unit`. journald tells which unit
// a line comes from by the sender's cgroup, read when it processes the line; a process that
// has exited by then (one that fails at once, the very case an error quotes) leaves lines
// without a unit. The system manager names the unit in the stream it opens for the
// process, so `-u` finds them anyway; a user manager does not. For a user manager, Journal
// also takes the lines without a unit whose _PID is the unit's last main process
// (ExecMainPID) and that were logged after it started, so the output of the last run is
// complete; lines of other processes of the unit that exited that early stay unattributed.
//
// It reads JSON rather than `-o cat`, so that a message journald stored as bytes (not valid
// UTF-8) is quoted as text instead of left out, and an entry without a MESSAGE is skipped
// rather than quoted as an empty line. A unit without lines has none, and no error.
func Journal(ctx context.Context, conn *sddbus.Conn, cfg JournalConfig, unit string, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	if err := cfg.sync(ctx); err != nil {
		return nil, fmt.Errorf("sync journal: %w", err)
	}
	args := []string{"--no-pager", "-q", "-o", "json", "--output-fields=" + journalFields}
	if cfg.Dir != "" {
		args = append(args, "-D", cfg.Dir)
	}
	if !cfg.User {
		entries, err := journalctl(ctx, append(args, "-n", strconv.Itoa(n), "-u", unit))
		return messages(entries), err
	}
	if cfg.Dir == "" {
		args = append(args, "--user")
	}
	main, err := lastMain(ctx, conn, unit)
	if err != nil {
		return nil, err
	}
	// Twice n: the _PID match may also find lines of other processes that had that PID,
	// which are dropped below.
	args = append(args, "-n", strconv.Itoa(2*n), "_SYSTEMD_USER_UNIT="+unit, "+", "USER_UNIT="+unit)
	if main.pid != 0 {
		args = append(args, "+", "_PID="+strconv.FormatUint(uint64(main.pid), 10))
	}
	entries, err := journalctl(ctx, args)
	if err != nil {
		return nil, err
	}
	entries = slices.DeleteFunc(entries, func(e entry) bool { return !e.ofUserUnit(unit, main) })
	lines := messages(entries)
	return lines[max(0, len(lines)-n):], nil
}

// journalFields are the fields Journal reads of each entry; journalctl adds
// __REALTIME_TIMESTAMP.
const journalFields = "MESSAGE,_PID,_SYSTEMD_UNIT,_SYSTEMD_USER_UNIT,USER_UNIT"

// entry is one journal entry as `journalctl -o json` prints it. A field is a string, an
// array of bytes when its value is not valid UTF-8, or an array of either when the entry
// has the field more than once.
type entry struct {
	Message  json.RawMessage `json:"MESSAGE"`
	PID      json.RawMessage `json:"_PID"`
	Unit     json.RawMessage `json:"_SYSTEMD_UNIT"`
	UserUnit json.RawMessage `json:"_SYSTEMD_USER_UNIT"`
	About    json.RawMessage `json:"USER_UNIT"` // the user manager's lines about a unit
	Realtime string          `json:"__REALTIME_TIMESTAMP"`
}

// mainProcess is a unit's last main process, as the manager remembers it.
type mainProcess struct {
	pid   uint32
	start time.Time
}

// ofUserUnit reports whether e is a line of the user unit whose last main process is main:
// attributed to it, or about it, or without a unit, from main's PID and logged after main
// started.
func (e entry) ofUserUnit(unit string, main mainProcess) bool {
	if text(e.UserUnit) == unit || text(e.About) == unit {
		return true
	}
	if e.UserUnit != nil || e.Unit != nil || main.pid == 0 || text(e.PID) != strconv.FormatUint(uint64(main.pid), 10) {
		return false
	}
	us, err := strconv.ParseInt(e.Realtime, 10, 64)
	return err == nil && !time.UnixMicro(us).Before(main.start)
}

// lastMain reads unit's last main process: ExecMainPID and ExecMainStartTimestamp. A unit
// the manager does not know has none (pid 0).
func lastMain(ctx context.Context, conn *sddbus.Conn, unit string) (mainProcess, error) {
	p, err := conn.GetUnitTypePropertiesContext(ctx, unit, "Service")
	if NoSuchUnit(err) {
		return mainProcess{}, nil
	}
	if err != nil {
		return mainProcess{}, fmt.Errorf("read main process of %s: %w", unit, err)
	}
	var mp mainProcess
	mp.pid, _ = p["ExecMainPID"].(uint32)
	us, _ := p["ExecMainStartTimestamp"].(uint64)
	mp.start = time.UnixMicro(int64(us))
	return mp, nil
}

// journalctl runs journalctl with args and decodes its output.
func journalctl(ctx context.Context, args []string) ([]entry, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("journalctl: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return decode(out)
}

// decode decodes journalctl's JSON lines.
func decode(out []byte) ([]entry, error) {
	var entries []entry
	for line := range bytes.Lines(out) {
		var e entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("journal entry %q: %w", line, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// messages lists the entries' MESSAGE fields as text, skipping entries without one.
func messages(entries []entry) []string {
	var lines []string
	for _, e := range entries {
		if e.Message != nil && string(e.Message) != "null" {
			lines = append(lines, text(e.Message))
		}
	}
	return lines
}

// text decodes a journal JSON field: a string; an array of bytes (a value that is not valid
// UTF-8), with invalid sequences replaced; or, for a field the entry has more than once, its
// values separated by spaces. Anything else is quoted as the JSON it is, never dropped.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var b []byte
	var ints []int
	if json.Unmarshal(raw, &ints) == nil {
		for _, v := range ints {
			b = append(b, byte(v))
		}
		return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
	}
	var values []json.RawMessage
	if json.Unmarshal(raw, &values) == nil {
		var out []string
		for _, v := range values {
			out = append(out, text(v))
		}
		return strings.Join(out, " ")
	}
	return string(raw)
}

// sync makes the journal hold everything journald has received: JournalConfig.Sync, or for the
// host's journal `journalctl --sync`, which needs root; without either it does nothing.
func (cfg JournalConfig) sync(ctx context.Context) error {
	switch {
	case cfg.Sync != nil:
		return cfg.Sync(ctx)
	case cfg.Dir == "" && os.Geteuid() == 0:
		if out, err := exec.CommandContext(ctx, "journalctl", "--sync").CombinedOutput(); err != nil {
			return fmt.Errorf("journalctl --sync: %w: %s", err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// SyncJournal asks the journald listening on socket (its io.systemd.journal varlink socket,
// /run/systemd/journal/io.systemd.journal for the host's) to write out everything it has
// received, as `journalctl --sync` does, and waits for it: a JournalConfig.Sync for a journald
// other than the host's.
func SyncJournal(ctx context.Context, socket string) error {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := c.Write([]byte(`{"method":"io.systemd.Journal.Synchronize","parameters":{}}` + "\x00")); err != nil {
		return fmt.Errorf("synchronize %s: %w", socket, err)
	}
	reply, err := bufio.NewReader(c).ReadBytes(0)
	if err != nil {
		return fmt.Errorf("synchronize %s: read reply: %w", socket, err)
	}
	var r struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(reply[:len(reply)-1], &r); err != nil {
		return fmt.Errorf("synchronize %s: reply %q: %w", socket, reply, err)
	}
	if r.Error != "" {
		return fmt.Errorf("synchronize %s: journald: %s", socket, r.Error)
	}
	return nil
}
