package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// launcher runs inside `unshare -m --propagation private`, so its mounts are
// private. Arguments: the journal directory, then the cgroup subtree in each
// hierarchy systemd tracks processes in. File descriptor 3 is the read end of
// a pipe only the test process writes to: when it closes (teardown, or the
// test process died) the launcher stops the manager, which stops every unit
// and the bus, then stops journald and waits for both.
const launcher = `set -eu
journal=$1
shift
for cg; do echo $$ >"$cg/launcher.scope/cgroup.procs"; done

# A private /run/systemd: the manager and journald put their sockets here, and
# /run/systemd/system makes sd_booted() true for them only.
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/system /run/systemd/journald.conf.d
# Sandboxing options bind-mount these nodes; PID 1 creates them at boot, the
# user manager creates the same under XDG_RUNTIME_DIR.
ln -s "$XDG_RUNTIME_DIR/systemd/inaccessible" /run/systemd/inaccessible

# journald keeps its files in /run/log/journal: the test's journal directory.
printf '%s\n' '[Journal]' Storage=volatile ReadKMsg=no ForwardToSyslog=no \
	ForwardToWall=no RateLimitBurst=0 RuntimeMaxUse=64M \
	>/run/systemd/journald.conf.d/testenv.conf
mkdir -p /run/log
mount --bind "$journal" /run/log
` + journaldBinary + ` 3<&- &
journald=$!
until [ -S /run/systemd/journal/stdout ]; do
	kill -0 $journald
	sleep 0.01
done

set +e
/bin/sh -c 'for cg; do echo $$ >"$cg/user@0.service/cgroup.procs"; done
exec ` + systemdBinary + ` --user --log-target=journal' manager "$@" 3<&- &
manager=$!
trap 'kill -TERM $manager' TERM
(read -r _ <&3; kill -TERM $$) &
watcher=$!
exec 3<&-
while :; do
	wait $manager
	status=$?
	kill -0 $manager 2>/dev/null || break
done
kill -TERM $watcher $journald 2>/dev/null
wait
exit $status
`

// start starts the launcher.
func (s *Systemd) start() error {
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	stopR, stopW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer stopR.Close()
	args := []string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", launcher, "launcher", s.JournalDir}
	for _, h := range s.tracked {
		args = append(args, filepath.Join(h, s.cgroup))
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, s.Env...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf // files, not pipes: Wait never waits for a straggler's output
	cmd.ExtraFiles = []*os.File{stopR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		stopW.Close()
		close(s.exited)
		return err
	}
	s.cmd, s.stopW = cmd, stopW
	go func() {
		cmd.Wait() // the exit status is in the launcher log when it matters
		close(s.exited)
	}()
	return nil
}

// waitRunning waits until the manager owns its bus name and says it is
// running (or degraded: a unit from the host's user units failed).
func (s *Systemd) waitRunning(deadline time.Time) error {
	var conn *dbus.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	state := "no bus"
	for ; time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-s.exited:
			return fmt.Errorf("launcher exited (%v) while waiting for the manager", s.cmd.ProcessState)
		default:
		}
		if conn == nil {
			c, err := dialBus(s.BusAddress)
			if err != nil {
				continue
			}
			conn, state = c, "bus up"
		}
		// Asking the manager before it owns its name would make dbus-daemon
		// try to activate it.
		var owned bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.systemd1").Store(&owned); err != nil {
			return fmt.Errorf("NameHasOwner: %w", err)
		}
		if !owned {
			continue
		}
		v, err := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
			GetProperty("org.freedesktop.systemd1.Manager.SystemState")
		if err != nil {
			return fmt.Errorf("read SystemState: %w", err)
		}
		state, _ = v.Value().(string)
		if state == "running" || state == "degraded" {
			return nil
		}
	}
	return fmt.Errorf("not running after 10s (state %q)", state)
}

// teardown stops the launcher and everything under it, then checks that no
// process of this manager is left and removes its cgroups. A leak fails the
// test.
func (s *Systemd) teardown(t testing.TB) {
	t.Helper()
	start := time.Now()
	if s.stopW != nil {
		s.stopUnits(t)
		s.stopW.Close() // the launcher's watcher sees EOF and stops the manager
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("systemd user manager: still running 10s after stop; killing every process\n%s", s.launcherLog())
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			s.killAll()
			<-s.exited
		}
	}
	// Every process was waited for by its parent: the launcher for the
	// manager and journald, the manager for the bus and the units.
	deadline := time.Now().Add(2 * time.Second)
	for left := s.processes(); len(left) > 0; left = s.processes() {
		if time.Now().After(deadline) {
			t.Errorf("systemd user manager: processes left after stop: %v", left)
			s.killAll()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.removeCgroups(); err != nil {
		t.Errorf("systemd user manager: %v", err)
	}
	t.Logf("systemd user manager stopped in %v", time.Since(start).Round(time.Millisecond))
}

// stopUnits stops the units while the manager keeps running. Stopping them
// as part of the manager's exit instead leaks their PrivateTmp directories
// (/tmp/systemd-private-*): the manager removes them in a thread of its own
// and exits without waiting for it. Problems are logged: teardown goes on.
func (s *Systemd) stopUnits(t testing.TB) {
	t.Helper()
	select {
	case <-s.exited:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Not "*": the manager also sees the host's devices and mounts.
	cmd := exec.CommandContext(ctx, "systemctl", "--user", "stop", "*.service", "*.socket", "*.timer", "*.path")
	cmd.Env = append(os.Environ(), s.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("systemd user manager: stop units before the manager: %v\n%s", err, out)
	}
	manager := filepath.Join(s.tracked[0], s.cgroup, "user@0.service", "init.scope", "cgroup.procs")
	b, err := os.ReadFile(manager)
	if err != nil {
		t.Logf("systemd user manager: %v", err)
		return
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil || strings.Contains(string(status), "\nThreads:\t1\n") {
			return
		}
	}
	t.Logf("systemd user manager: pid %d still runs a removal thread after 2s", pid)
}

// process is a process identified beyond its pid: pids are reused.
type process struct {
	PID   int
	Start uint64 // clock ticks after boot (/proc/PID/stat field 22)
}

func (p process) String() string { return strconv.Itoa(p.PID) }

// alive reports whether p is still running, or a zombie nobody has reaped.
func (p process) alive() bool {
	start, err := processStart(p.PID)
	return err == nil && start == p.Start
}

func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold anything.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// processes returns every process in this manager's cgroup subtrees: the
// launcher, journald, dbus-daemon, the manager and every unit's processes.
func (s *Systemd) processes() []process {
	var ps []process
	for _, h := range s.tracked {
		filepath.WalkDir(filepath.Join(h, s.cgroup), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			for f := range strings.FieldsSeq(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					continue
				}
				if start, err := processStart(pid); err == nil {
					p := process{pid, start}
					if !slices.Contains(ps, p) {
						ps = append(ps, p)
					}
				}
			}
			return nil
		})
	}
	return ps
}

func (s *Systemd) killAll() {
	for _, p := range s.processes() {
		syscall.Kill(p.PID, syscall.SIGKILL)
	}
}

// removeCgroups removes this manager's subtree from every cgroup hierarchy:
// the ones we created and the ones systemd created for units in v1
// controllers. Directories are removed deepest first.
func (s *Systemd) removeCgroups() error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		root := filepath.Join(m.dir, s.cgroup)
		var dirs []string
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for _, d := range slices.Backward(dirs) {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

type cgroupMount struct {
	dir     string
	fstype  string // cgroup or cgroup2
	options string // super options: the v1 controllers, name=systemd
}

// cgroupMounts lists the mounted cgroup hierarchies.
func cgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []cgroupMount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup/systemd rw,… shared:9 - cgroup cgroup rw,name=systemd
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || (qf[0] != "cgroup" && qf[0] != "cgroup2") {
			continue
		}
		ms = append(ms, cgroupMount{dir: unescapeMount(pf[4]), fstype: qf[0], options: qf[2]})
	}
	return ms, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// trackingHierarchies returns the cgroup hierarchies systemd keeps its
// processes in, checking they are writable: the unified one on a cgroup v2
// host; name=systemd and, if mounted, the unified one on a v1 (hybrid) host.
// Each manager gets a subtree of its own there, so two managers on one host
// never share a unit's cgroup (a stop would kill the other's processes).
func trackingHierarchies() ([]string, error) {
	ms, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var v2, named []string
	for _, m := range ms {
		switch {
		case m.fstype == "cgroup2":
			v2 = append(v2, m.dir)
		case slices.Contains(strings.Split(m.options, ","), "name=systemd"):
			named = append(named, m.dir)
		}
	}
	var dirs []string
	switch {
	case len(named) > 0:
		dirs = append(named[:1], v2...)
	case len(v2) > 0:
		dirs = v2[:1]
	default:
		return nil, errors.New("no cgroup2 or name=systemd hierarchy mounted")
	}
	for _, d := range dirs {
		if err := unix.Access(d, unix.W_OK); err != nil {
			return nil, fmt.Errorf("cgroup hierarchy %s not writable: %w", d, err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err != nil {
			return nil, fmt.Errorf("cgroup hierarchy %s: %w", d, err)
		}
		if st.Flags&unix.ST_RDONLY != 0 {
			return nil, fmt.Errorf("cgroup hierarchy %s mounted read-only", d)
		}
	}
	return dirs, nil
}

// syncJournal asks this manager's journald to write out everything it has
// received (the varlink call behind `journalctl --sync`). Its socket is in the
// private /run/systemd, reached through the launcher's root in /proc.
func (s *Systemd) syncJournal() error {
	path := fmt.Sprintf("/proc/%d/root/run/systemd/journal/io.systemd.journal", s.cmd.Process.Pid)
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
