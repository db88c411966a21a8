package usermanager

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/pushdeploy/pushdeploy/internal/sdbus"
)

// launcher runs inside `unshare -m --propagation private`, so its mounts are private.
// Arguments: the log directory, then the cgroup subtree in each hierarchy systemd tracks
// processes in. File descriptor 3 is the read end of a pipe only the starting process
// writes to: when it closes (Stop, or the starting process died) the launcher stops the
// manager, which stops every unit and the bus, then stops journald and waits for both.
const launcher = `set -eu
logdir=$1
shift
for cg; do echo $$ >"$cg/launcher.scope/cgroup.procs"; done

# A private /run/systemd: the manager and journald put their sockets here, and
# /run/systemd/system makes sd_booted() true for them only.
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/system /run/systemd/journald.conf.d
# Sandboxing options bind-mount these nodes; PID 1 creates them at boot, the
# user manager creates the same under XDG_RUNTIME_DIR.
ln -s "$XDG_RUNTIME_DIR/systemd/inaccessible" /run/systemd/inaccessible

# journald keeps its files in /run/log/journal: the manager's journal directory.
printf '%s\n' '[Journal]' Storage=volatile ReadKMsg=no ForwardToSyslog=no \
	ForwardToWall=no RateLimitBurst=0 RuntimeMaxUse=64M \
	>/run/systemd/journald.conf.d/usermanager.conf
mkdir -p /run/log
mount --bind "$logdir" /run/log
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
func (m *Manager) start() error {
	logf, err := os.Create(m.launcherLogPath())
	if err != nil {
		close(m.exited)
		return err
	}
	defer logf.Close()
	stopR, stopW, err := os.Pipe()
	if err != nil {
		close(m.exited)
		return err
	}
	defer stopR.Close()
	args := []string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", launcher, "launcher", m.LogDir}
	for _, h := range m.tracked {
		args = append(args, filepath.Join(h, m.Cgroup))
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, m.Env...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf // files, not pipes: Wait never waits for a straggler's output
	cmd.ExtraFiles = []*os.File{stopR}
	// A process group of its own: a terminal's ^C reaches only the process that started
	// it, which then stops the manager in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		stopW.Close()
		close(m.exited)
		return err
	}
	m.cmd, m.stopW = cmd, stopW
	go func() { // waited for by Stop, through exited
		cmd.Wait() // the exit status is in the launcher log when it matters
		close(m.exited)
	}()
	return nil
}

// waitRunning waits until the manager owns its bus name and says it is running (or
// degraded: a unit from the host's user units failed).
func (m *Manager) waitRunning(deadline time.Time) error {
	var conn *dbus.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	state := "no bus"
	for ; time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-m.exited:
			return fmt.Errorf("launcher exited (%v) while waiting for the manager", m.cmd.ProcessState)
		default:
		}
		if conn == nil {
			c, err := sdbus.Dial(m.BusAddress)
			if err != nil {
				continue
			}
			conn, state = c, "bus up"
		}
		// Asking the manager before it owns its name would make dbus-daemon try to
		// activate it.
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
	return fmt.Errorf("not running after %v (state %q)", startTimeout, state)
}

// stopUnits stops the units while the manager keeps running. Stopping them as part of
// the manager's exit instead leaks their PrivateTmp directories (/tmp/systemd-private-*):
// the manager removes them in a thread of its own and exits without waiting for it.
// Problems are logged: Stop goes on.
func (m *Manager) stopUnits() {
	select {
	case <-m.exited:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Not "*": the manager also sees the host's devices and mounts.
	cmd := m.Command(ctx, "systemctl", "--user", "stop", "*.service", "*.socket", "*.timer", "*.path")
	if out, err := cmd.CombinedOutput(); err != nil {
		m.log("systemd user manager: stop units before the manager: %v\n%s", err, out)
	}
	manager := filepath.Join(m.tracked[0], m.Cgroup, "user@0.service", "init.scope", "cgroup.procs")
	b, err := os.ReadFile(manager)
	if err != nil {
		m.log("systemd user manager: %v", err)
		return
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil || strings.Contains(string(status), "\nThreads:\t1\n") {
			return
		}
	}
	m.log("systemd user manager: pid %d still runs a removal thread after 2s", pid)
}
