package testenv

// A lab, as the machine sees it (nothing of it in the machine's own network):
//
//	machine netns (untouched)   lab netns (cloned by the holder, a sleep)
//	                            lo, br0 10.77.0.1/24  <- Lab.Command, Lab.Listen, Lab.DialContext
//	                             +- vb-h1 <-> host0 10.77.0.11  h1: systemd-nspawn --boot, PID 1 systemd
//	                             +- vb-h2 <-> host0 10.77.0.12  h2
//
// Each host's systemd-nspawn runs in a private mount namespace holding its overlay (lower:
// the cached rootfs, read-only; upper: RunDir/<lab>/<host>/upper) and in a cgroup subtree
// <lab>/<host> of its own; the holder is in <lab>/net. Several labs run at once: each has
// its own namespace, so all use 10.77.0.0/24.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
	"github.com/pushdeploy/pushdeploy/internal/usermanager"
)

// Where a lab keeps things on the machine, unless LabOptions say otherwise. Neither is
// under /tmp: each host's mount namespace gets a tmpfs on /tmp (systemd-nspawn's scratch
// files stay private), which would hide an overlay directory there.
const (
	DefaultLabCacheDir = "/var/cache/pushdeploy-lab"
	DefaultLabRunDir   = "/var/lib/pushdeploy-lab/run"
)

// LabSubnet is the lab network: it exists only inside each lab's own network namespace,
// so labs running at the same time all use it, and the machine never routes to it.
var LabSubnet = netip.MustParsePrefix("10.77.0.0/24")

// labBridge is the bridge in the lab namespace every host's veth is attached to.
const labBridge = "br0"

// LabOptions configure StartLab; the zero value is the default lab.
type LabOptions struct {
	// Packages are installed in the hosts' rootfs on top of LabBasePackages (each distinct
	// list is a cache of its own, built the first time it is asked for).
	Packages []string
	// CacheDir holds the rootfs caches; empty means DefaultLabCacheDir.
	CacheDir string
	// RunDir holds each lab's hosts' directories (overlay upper dirs, console logs) while
	// the lab runs; empty means DefaultLabRunDir.
	RunDir string
}

// Lab is a network of real Debian 12 hosts booted with systemd as PID 1, private to one
// test: a network namespace of its own (made by the test and held by a sleeping process),
// with a bridge at BridgeIP that every host started by Boot is attached to. Nothing of it
// is visible in the machine's own network; reach it with Command, Listen and DialContext.
type Lab struct {
	// BridgeIP is the bridge's address in the lab namespace (10.77.0.1): a server started
	// with Command, or given a listener from Listen, there is what hosts reach as "the
	// outside".
	BridgeIP netip.Addr
	// Rootfs is the cached rootfs every host's overlay has as its read-only lower layer.
	Rootfs string

	name   string     // pushdeploy-lab-PID-N: cgroup subtree and run directory
	dir    string     // RunDir/name
	cgroup cgroupTree // name in each hierarchy; the holder and each host below it

	holder       *exec.Cmd
	holderExited chan struct{}
	netns        *os.File // the holder's /proc/PID/ns/net, for inNetns

	mu     sync.Mutex
	hosts  map[string]*Host
	nextIP netip.Addr
}

var labCount atomic.Int64

// unavailable ends the test because this machine cannot run a lab, saying why: a skip, or
// a failure under CI=true (Unavailable).
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	Unavailable(t, "lab", format, args...)
}

// forker is one OS thread that never exits, which starts every process the lab gives a
// Pdeathsig: the kernel sends that signal when the *thread* that forked the child ends,
// and the Go runtime ends a thread whenever a goroutine locked to it exits (inNetns's did
// before it learned to leave the namespace; any code in a test binary may), which killed
// a host in the middle of a test. A child forked here gets its signal only when the test
// process dies.
var forker = sync.OnceValue(func() chan<- func() {
	ch := make(chan func())
	// Lives as long as the test process: it must never end, so nothing waits for it.
	go func() {
		runtime.LockOSThread()
		for f := range ch {
			f()
		}
	}()
	return ch
})

// onForker runs f on forker's thread and returns when it returned.
func onForker(f func()) {
	done := make(chan struct{})
	forker() <- func() { f(); close(done) }
	<-done
}

// startPinned starts cmd on forker's thread.
func startPinned(cmd *exec.Cmd) (err error) {
	onForker(func() { err = cmd.Start() })
	return err
}

// StartLab makes a lab for the test: the rootfs cache (built first when missing, which
// takes about a minute and needs the Debian mirror apt is configured with), a network
// namespace held by a process in the lab's cgroup subtree, and a bridge there at
// BridgeIP. In t.Cleanup, after the hosts stopped (theirs run first), the holder is killed
// (the namespace, its bridge and the veths go with it), the cgroup subtree is checked
// empty and removed, and the run directory removed.
//
// It skips the test through unavailable, saying why, only when the machine cannot run a
// lab: not root; systemd-nspawn, unshare, nsenter, mount or ip missing; no overlay
// filesystem; no writable cgroup hierarchy; and when the rootfs is not cached yet,
// debootstrap missing, no mirror in apt's sources or no network to it. Anything else
// fails the test.
func StartLab(t testing.TB, opts LabOptions) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "needs root (network namespaces, mounts, cgroups)")
	}
	for _, prog := range []string{"systemd-nspawn", "unshare", "nsenter", "mount", "ip"} {
		if _, err := exec.LookPath(prog); err != nil {
			unavailable(t, "%s not installed (Debian packages systemd-container, util-linux, mount, iproute2)", prog)
		}
	}
	if b, err := os.ReadFile("/proc/filesystems"); err != nil || !slices.Contains(strings.Fields(string(b)), "overlay") {
		unavailable(t, "no overlay filesystem in /proc/filesystems (modprobe overlay)")
	}
	hierarchies, err := usermanager.CgroupHierarchies()
	if err != nil {
		unavailable(t, "%v", err)
	}
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultLabCacheDir
	}
	if opts.RunDir == "" {
		opts.RunDir = DefaultLabRunDir
	}

	start := time.Now()
	rootfs, built, err := ensureRootfs(t.Context(), opts.CacheDir, labPackages(opts.Packages), t.Logf)
	if errors.Is(err, errNoRootfs) {
		unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if built {
		t.Logf("lab: rootfs built in %v", time.Since(start).Round(time.Millisecond))
	}

	name := fmt.Sprintf("pushdeploy-lab-%d-%d", os.Getpid(), labCount.Add(1))
	l := &Lab{
		BridgeIP: LabSubnet.Addr().Next(),
		Rootfs:   rootfs,
		name:     name,
		dir:      filepath.Join(opts.RunDir, name),
		cgroup:   cgroupTree(hierarchies).sub(name),
		hosts:    map[string]*Host{},
	}
	l.nextIP = l.BridgeIP.Next()
	for range 9 { // hosts from .11: .2–.10 stay free for what a test adds to the lab
		l.nextIP = l.nextIP.Next()
	}
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.close(); err != nil {
			t.Error(err)
		}
	})
	if err := l.startNetwork(); err != nil {
		t.Fatal(err)
	}
	return l
}

// holderScript joins the cgroup directories given as arguments and becomes the process
// that holds the lab's network namespace.
const holderScript = `set -e
for cg; do echo $$ >"$cg/cgroup.procs"; done
exec sleep infinity`

// startNetwork starts the holder and sets up lo and the bridge in its namespace.
//
// The holder is cloned into a new network namespace (CLONE_NEWNET, what `unshare -n`
// does), so the namespace exists when Start returns. Waiting instead for an `unshare -n`
// child to have switched, by comparing its namespace with the test process's, once ran
// the bridge commands in the machine's namespace: /proc/self/ns/net is the main thread's,
// which a goroutine had left in an earlier lab's namespace.
func (l *Lab) startNetwork() error {
	cg := l.cgroup.sub("net")
	if err := cg.create(); err != nil {
		return err
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", holderScript, "holder"}, cg...)...)
	// Its own session (a terminal's ^C reaches only the test), and gone with the test
	// process if that dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Setsid: true, Pdeathsig: syscall.SIGKILL}
	out := new(syncbuf.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := startPinned(cmd); err != nil {
		return fmt.Errorf("start lab network holder: %w", err)
	}
	l.holder, l.holderExited = cmd, make(chan struct{})
	go func() { // waited for by close, through holderExited
		cmd.Wait()
		close(l.holderExited)
	}()
	netns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if err != nil {
		return fmt.Errorf("open lab network namespace: %w", err)
	}
	l.netns = netns
	// Belt and braces: never configure the test process's own namespace (forker's thread
	// never enters another).
	var own string
	var err2 error
	onForker(func() { own, err2 = os.Readlink("/proc/thread-self/ns/net") })
	lab, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if err := errors.Join(err1, err2); err != nil || lab == own {
		return fmt.Errorf("lab network holder is not in a namespace of its own (%s, test process %s): %v", lab, own, err)
	}

	bits := strconv.Itoa(LabSubnet.Bits())
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", labBridge, "type", "bridge"},
		{"addr", "add", l.BridgeIP.String() + "/" + bits, "dev", labBridge},
		{"link", "set", labBridge, "up"},
	} {
		if out, err := l.Command(context.Background(), "ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("lab network: ip %v: %w: %s", args, err, out)
		}
	}
	return nil
}

// Command returns a command that runs a program of the machine (etcd, git daemon,
// haproxy, curl, ip …) inside the lab's network namespace, and nowhere else: it sees lo
// and the bridge, listens on BridgeIP and reaches the hosts' addresses. It is entered with
// `nsenter -n` (not `ip netns exec`, which remounts /sys), which execs the program, so
// the command's process is the program. It has the test's environment without proxy
// settings (no proxy is reachable from the lab). The caller starts and waits for it; one
// still running when the lab closes keeps the namespace alive.
//
// Once the lab is closed, the holder's pid may be anyone's: the command then runs false.
func (l *Lab) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	select {
	case <-l.holderExited:
		return exec.CommandContext(ctx, "false")
	default:
	}
	cmd := exec.CommandContext(ctx, "nsenter",
		append([]string{"-t", strconv.Itoa(l.holder.Process.Pid), "-n", "--", name}, args...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return strings.HasSuffix(strings.ToLower(k), "_proxy")
	})
	return cmd
}

// hostList returns the hosts booted in the lab so far, running or not.
func (l *Lab) hostList() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	hs := make([]*Host, 0, len(l.hosts))
	for _, h := range l.hosts {
		hs = append(hs, h)
	}
	return hs
}

// close stops a host still running (normally each stopped in its own cleanup), kills the
// holder, checks the cgroup subtree is empty and removes it and the run directory.
func (l *Lab) close() error {
	var errs []error
	for _, h := range l.hostList() {
		if err := h.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if l.holder != nil {
		l.holder.Process.Signal(syscall.SIGKILL)
		<-l.holderExited
	}
	if l.netns != nil {
		l.netns.Close()
	}
	if err := l.cgroup.drain(5 * time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := l.cgroup.remove(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(l.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
