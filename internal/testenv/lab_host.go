package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Bounds of a host's life; generous, as a loaded CI machine runs -race tests beside it.
const (
	hostBootTimeout = 2 * time.Minute  // nspawn start to "running" (warm: about 1 s)
	hostStopTimeout = 30 * time.Second // SIGTERM to nspawn's exit (about 0.5 s)
)

// hostEnv is the whole environment of a command run in a host: the test's own (GOPATH,
// proxies, a pyenv PATH) means nothing there.
var hostEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"}

// hostName is what Boot accepts: a hostname label, short enough that the machine name
// and the veth nspawn names after it stay readable.
var hostName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// Host is a Debian 12 host of a Lab, booted by systemd-nspawn with systemd as PID 1: its
// own root (an overlay of the lab's cached rootfs and a directory of its own, kept across
// Reboot), hostname, machine-id, network namespace with host0 at IP() on the lab bridge,
// and cgroup subtree. Commands reach it through nsenter (machinectl and machined are not
// used: the machine has no system bus).
type Host struct {
	// Name is the hostname and the machine name.
	Name string

	lab    *Lab
	ip     netip.Addr
	dir    string     // upper/, work/, merged/ and console.log
	cgroup cgroupTree // the lab's subtree / Name

	nspawn *exec.Cmd     // nil while stopped
	exited chan struct{} // closed once nspawn was waited for
	leader int           // the host's PID 1, as the machine sees it
}

// Boot boots a new host called name (a hostname label) on the lab and waits until its
// systemd says the system is running (or degraded), with host0 configured. It is stopped
// in t.Cleanup, its directory then removed. A host that does not boot fails the test,
// with nspawn's output and the host's journal.
func (l *Lab) Boot(t testing.TB, name string) *Host {
	t.Helper()
	if !hostName.MatchString(name) {
		t.Fatalf("lab host name %q: want a lowercase hostname label of at most 20 characters", name)
	}
	l.mu.Lock()
	if _, dup := l.hosts[name]; dup {
		l.mu.Unlock()
		t.Fatalf("lab host %s booted twice", name)
	}
	if !LabSubnet.Contains(l.nextIP.Next()) {
		l.mu.Unlock()
		t.Fatalf("lab host %s: no address left in %s", name, LabSubnet)
	}
	h := &Host{Name: name, lab: l, ip: l.nextIP, dir: filepath.Join(l.dir, name), cgroup: l.cgroup.sub(name)}
	l.nextIP = l.nextIP.Next()
	l.hosts[name] = h
	l.mu.Unlock()

	for _, d := range []string{"upper/etc", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(h.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// PID 1 sets the hostname from /etc/hostname: the upper layer's copy wins.
	if err := os.WriteFile(filepath.Join(h.dir, "upper/etc/hostname"), []byte(name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Error(err)
		}
		if err := os.RemoveAll(h.dir); err != nil {
			t.Error(err)
		}
	})
	h.boot(t)
	return h
}

// bootScript joins the host's cgroup directories, enters the lab's network namespace and
// a private mount namespace, mounts the overlay and the tmpfs nspawn wants there, and
// becomes systemd-nspawn. Every step execs, so the process started is nspawn itself.
// Arguments: holder pid, lower, upper, work, merged, machine name, cgroup directories.
const bootScript = `set -e
holder=$1 lower=$2 upper=$3 work=$4 merged=$5 name=$6
shift 6
for cg; do echo $$ >"$cg/cgroup.procs"; done
exec nsenter -t "$holder" -n -- unshare --mount --propagation private -- /bin/sh -c '
set -e
mount -t tmpfs -o mode=0755 tmpfs /tmp
mkdir -p /run/systemd/nspawn
mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
exec systemd-nspawn --quiet --keep-unit --register=no --console=passive --link-journal=no \
	-M "$5" -D "$4" --network-bridge=` + labBridge + ` --boot
' nspawn "$lower" "$upper" "$work" "$merged" "$name"`

// boot starts nspawn on the host's directory and waits until the host runs.
func (h *Host) boot(t testing.TB) {
	t.Helper()
	start := time.Now()
	if err := h.start(); err != nil {
		if stopErr := h.Stop(); stopErr != nil {
			t.Log(stopErr)
		}
		t.Fatalf("boot lab host %s: %v\nnspawn output:\n%s", h.Name, err, tail(h.consolePath(), 30))
	}
	ctx, cancel := context.WithTimeout(t.Context(), hostBootTimeout)
	defer cancel()
	state, err := h.WaitRunning(ctx)
	if err != nil {
		journal, _ := h.Run(context.Background(), "journalctl", "-b", "--no-pager", "-n", "60")
		if stopErr := h.Stop(); stopErr != nil {
			t.Log(stopErr)
		}
		t.Fatalf("boot lab host %s: %v\nnspawn output:\n%s\njournal:\n%s", h.Name, err, tail(h.consolePath(), 30), journal)
	}
	t.Logf("lab: %s booted in %v (%s), %s, PID 1 is %d", h.Name, time.Since(start).Round(time.Millisecond), state, h.ip, h.leader)
	if state == "degraded" {
		failed, _ := h.Run(ctx, "systemctl", "--failed", "--no-legend", "--plain")
		t.Logf("lab: %s failed units: %s", h.Name, bytes.TrimSpace(failed))
	}
}

// start starts nspawn, waits for the host's PID 1 and gives host0 its address.
func (h *Host) start() error {
	if err := h.cgroup.remove(); err != nil { // what a previous boot's systemd left
		return err
	}
	if err := h.cgroup.create(); err != nil {
		return err
	}
	console, err := os.OpenFile(h.consolePath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer console.Close()
	args := append([]string{"-c", bootScript, "boot", strconv.Itoa(h.lab.holder.Process.Pid),
		h.lab.Rootfs, filepath.Join(h.dir, "upper"), filepath.Join(h.dir, "work"), filepath.Join(h.dir, "merged"), h.Name},
		h.cgroup...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = hostEnv
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = console, console // a file: Wait never waits for a straggler's output
	// Its own session (a terminal's ^C reaches only the test); should the test process
	// die without cleaning up, nspawn gets the one SIGTERM that powers the host off.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}
	if err := startPinned(cmd); err != nil {
		return fmt.Errorf("start systemd-nspawn: %w", err)
	}
	h.nspawn, h.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { // waited for by Stop, through exited
		cmd.Wait()
		close(exited)
	}(h.exited)

	// PID 1 is nspawn's child once it exec'd systemd, which nspawn lets it do only after
	// the network (host0) is in place.
	for deadline := time.Now().Add(30 * time.Second); h.leader == 0; time.Sleep(10 * time.Millisecond) {
		select {
		case <-h.exited:
			return fmt.Errorf("systemd-nspawn exited: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("no systemd child of systemd-nspawn after 30s")
		}
		h.leader = childNamed(h.cgroup.pids(), cmd.Process.Pid, "systemd")
	}
	bits := strconv.Itoa(LabSubnet.Bits())
	for _, args := range [][]string{
		{"addr", "add", h.ip.String() + "/" + bits, "dev", "host0"},
		{"link", "set", "host0", "up"},
	} {
		// The machine's ip in the host's network namespace: the rootfs has no iproute2.
		ip := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(h.leader), "-n", "--", "ip"}, args...)...)
		if out, err := ip.CombinedOutput(); err != nil {
			return fmt.Errorf("host0: ip %v: %w: %s", args, err, out)
		}
	}
	return nil
}

// childNamed returns the pid among pids whose parent is ppid and whose command is comm,
// or 0.
func childNamed(pids []int, ppid int, comm string) int {
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid …": comm may hold spaces and parentheses.
		lp, rp := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if lp < 0 || rp < lp {
			continue
		}
		f := bytes.Fields(stat[rp+1:])
		if len(f) > 1 && string(stat[lp+1:rp]) == comm && string(f[1]) == strconv.Itoa(ppid) {
			return pid
		}
	}
	return 0
}

func (h *Host) consolePath() string { return filepath.Join(h.dir, "console.log") }

// IP returns the host's address on the lab bridge (host0), the same across Reboot.
func (h *Host) IP() netip.Addr { return h.ip }

// Leader returns the pid of the host's PID 1 as the machine sees it (what nsenter -t and
// ansible's community.docker.nsenter connection take), or 0 while the host is stopped.
func (h *Host) Leader() int { return h.leader }

// Processes returns the pids of every process of the host (nspawn and everything in the
// container) as the machine sees them; none once it stopped.
func (h *Host) Processes() []int { return h.cgroup.pids() }

// Command returns a command that runs a program of the host, in all its namespaces (mount,
// pid, network, uts, ipc, cgroup), as root, with a plain environment (PATH, LANG, HOME).
// It runs outside the host's units: use systemd-run for a unit's sandbox and user.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter",
		append([]string{"-t", strconv.Itoa(h.leader), "-a", "--", name}, args...)...)
	cmd.Env = hostEnv
	return cmd
}

// Run runs argv in the host (see Command) and returns its standard output. A failure
// returns that output too (`systemctl is-active` prints the state and exits 3), with an
// error holding the exit status and the standard error.
func (h *Host) Run(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("run in lab host: no command")
	}
	if h.leader == 0 {
		return nil, fmt.Errorf("run %s in lab host %s: host is stopped", argv[0], h.Name)
	}
	cmd := h.Command(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("run %s in lab host %s: %w: %s", strings.Join(argv, " "), h.Name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Exec runs argv in the host and returns its standard output, trimmed. A failure fails
// the test; use Run when the exit status is the answer.
func (h *Host) Exec(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := h.Run(t.Context(), argv...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// WaitRunning polls `systemctl is-system-running` until the host's systemd says
// "running" or "degraded" (a unit failed; the state is returned so the caller may check)
// and returns that state. It returns an error when ctx ends first, with the last state
// seen, or when nspawn exited.
func (h *Host) WaitRunning(ctx context.Context) (string, error) {
	state := "no answer"
	for {
		select {
		case <-h.exited:
			return "", fmt.Errorf("lab host %s: systemd-nspawn exited (%v) while booting", h.Name, h.nspawn.ProcessState)
		default:
		}
		// Exits non-zero for anything but running; before the bus is up, prints nothing.
		out, err := h.Run(ctx, "systemctl", "is-system-running")
		if s := strings.TrimSpace(string(out)); s != "" {
			state = s
		} else if err != nil {
			state = err.Error()
		}
		if state == "running" || state == "degraded" {
			return state, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("lab host %s not running: %w (state: %s)", h.Name, ctx.Err(), state)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WriteFile writes data to path in the running host, with mode, creating the parent
// directories: through the host's own shell, so path resolves as the host sees it (a
// symlink in it never leads out of the host) and the file goes through its overlay. The
// file is written beside path and renamed over it.
func (h *Host) WriteFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	const script = `set -e; mkdir -p "$(dirname "$1")"; cat >"$1.lab-new"; chmod "$2" "$1.lab-new"; mv -f "$1.lab-new" "$1"`
	cmd := h.Command(t.Context(), "/bin/sh", "-c", script, "sh", path, strconv.FormatUint(uint64(mode.Perm()), 8))
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("write %s in lab host %s: %v: %s", path, h.Name, err, out)
	}
}

// CopyIn copies the machine's file src to dst in the running host, with src's mode (see
// WriteFile).
func (h *Host) CopyIn(t testing.TB, src, dst string) {
	t.Helper()
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	h.WriteFile(t, dst, data, fi.Mode())
}

// Reboot stops the host (Stop) and boots it again on the same root: files written, units
// enabled and its machine-id persist; what was only running does not.
func (h *Host) Reboot(t testing.TB) {
	t.Helper()
	start := time.Now()
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("lab: %s powered off in %v", h.Name, time.Since(start).Round(time.Millisecond))
	h.boot(t)
}

// Stop powers the host off: exactly one SIGTERM to nspawn (which asks PID 1 for a clean
// poweroff; a second one would kill the host outright), then waits for nspawn to exit. The
// host's mounts went with nspawn's private mount namespace; its cgroup subtree is checked
// empty and removed. Its directory is kept for Reboot. Stopping a stopped host does
// nothing.
//
// It returns an error when the host did not power off cleanly: nspawn exited non-zero,
// or did not exit within 30 s (it is then killed, as is anything left in the host's
// cgroup), or a process outlived it.
func (h *Host) Stop() error {
	if h.nspawn == nil {
		return nil
	}
	var errs []error
	h.nspawn.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
		if !h.nspawn.ProcessState.Success() {
			errs = append(errs, fmt.Errorf("lab host %s: unclean poweroff, systemd-nspawn %v:\n%s", h.Name, h.nspawn.ProcessState, tail(h.consolePath(), 20)))
		}
	case <-time.After(hostStopTimeout):
		h.nspawn.Process.Signal(syscall.SIGKILL)
		<-h.exited
		errs = append(errs, fmt.Errorf("lab host %s: no poweroff %v after SIGTERM, killed", h.Name, hostStopTimeout))
	}
	if err := h.cgroup.drain(5 * time.Second); err != nil {
		errs = append(errs, fmt.Errorf("lab host %s: %w", h.Name, err))
	}
	if err := h.cgroup.remove(); err != nil {
		errs = append(errs, fmt.Errorf("lab host %s: %w", h.Name, err))
	}
	h.nspawn, h.leader = nil, 0
	return errors.Join(errs...)
}
