package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// gitFront is a TCP front for a real git server on loopback, for faults a running server
// cannot show on demand: switched off (connections refused on its port) or stalling (it
// accepts connections, then never answers). Forwarding, it copies bytes both ways.
type gitFront struct {
	t      *testing.T
	target string // the real server, host:port
	addr   string // the front's, 127.0.0.1:N

	mu    sync.Mutex
	ln    net.Listener // nil while off
	stall bool
	conns []net.Conn // open connections, closed when the front goes off or the test ends
	wg    sync.WaitGroup
}

func newGitFront(t *testing.T, target string) *gitFront {
	g := &gitFront{t: t, target: target}
	g.listen("127.0.0.1:0")
	t.Cleanup(func() { g.off(); g.wg.Wait() })
	return g
}

func (g *gitFront) listen(addr string) {
	var ln net.Listener
	var err error
	for range 50 { // the port may linger for a moment after a close
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		g.t.Fatalf("git front: listen on %s: %v", addr, err)
	}
	g.mu.Lock()
	g.ln, g.addr = ln, ln.Addr().String()
	g.mu.Unlock()
	g.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			g.conns = append(g.conns, c)
			stall := g.stall
			g.mu.Unlock()
			if stall {
				continue // held open, never read: the client waits for an answer
			}
			g.wg.Go(func() { g.forward(c) })
		}
	})
}

func (g *gitFront) forward(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	defer s.Close()
	g.mu.Lock()
	g.conns = append(g.conns, s)
	g.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() })
	io.Copy(c, s)
	c.(*net.TCPConn).CloseWrite()
	wg.Wait()
}

// off closes the listener and every connection: the port refuses connections.
func (g *gitFront) off() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

// on listens again on the same port, forwarding.
func (g *gitFront) on() {
	g.mu.Lock()
	g.stall = false
	running := g.ln != nil
	g.mu.Unlock()
	if !running {
		g.listen(g.addr)
	}
}

// setStall makes new connections stall (true) or be forwarded (false); a stalled
// connection is closed when stalling ends.
func (g *gitFront) setStall(stall bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stall = stall
	if !stall {
		for _, c := range g.conns {
			c.Close()
		}
		g.conns = nil
	}
}

// smallDisk is a tmpfs of a few MiB mounted in a mount namespace of its own, held by a
// process (`unshare -m`, then `sleep`): the host never sees the mount, and it goes away
// with the holder, which t.Cleanup kills. Dir is the mount as seen from this process,
// through /proc/<holder>/root.
type smallDisk struct {
	Dir    string
	holder *exec.Cmd
	mnt    string // the mount point inside the holder's namespace
}

func newSmallDisk(t *testing.T, sizeMiB int) *smallDisk {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "tmpfs in a private mount namespace", "needs root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		testenv.Unavailable(t, "unshare", "not installed (Debian package util-linux)")
	}
	mnt := t.TempDir() // the mount point: empty on the host, the tmpfs in the namespace
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
		`mount -t tmpfs -o size=`+strconv.Itoa(sizeMiB)+`m,mode=0755 pushdeploy-test "$0" && echo mounted && exec sleep 3600`, mnt)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		testenv.Unavailable(t, "unshare", "%v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 8)
	if n, _ := io.ReadFull(out, buf[:len("mounted\n")]); n != len("mounted\n") {
		testenv.Unavailable(t, "tmpfs in a private mount namespace", "unshare -m and mount tmpfs failed (see the test's stderr)")
	}
	d := &smallDisk{Dir: filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "root", mnt), holder: cmd, mnt: mnt}
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.Dir, &st); err != nil || st.Type != 0x01021994 { // TMPFS_MAGIC
		t.Fatalf("small disk %s: statfs %v, type %#x: want the tmpfs", d.Dir, err, st.Type)
	}
	return d
}

// free returns the bytes available on the disk.
func (d *smallDisk) free(t *testing.T) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.Dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill writes a ballast file so that about leave bytes stay free.
func (d *smallDisk) fill(t *testing.T, leave int64) {
	t.Helper()
	n := d.free(t) - leave
	if n <= 0 {
		t.Fatalf("small disk: only %d bytes free, want more than %d", d.free(t), leave)
	}
	f, err := os.Create(filepath.Join(d.Dir, "ballast"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for n > 0 {
		w := min(n, int64(len(chunk)))
		if _, err := f.Write(chunk[:w]); err != nil {
			t.Fatalf("write ballast: %v", err)
		}
		n -= w
	}
}

// unfill removes the ballast: space is freed.
func (d *smallDisk) unfill(t *testing.T) {
	t.Helper()
	if err := os.Remove(filepath.Join(d.Dir, "ballast")); err != nil {
		t.Fatal(err)
	}
}

// leftovers lists what a failed deploy may leave in the data directory and must not:
// release directories being built, objects being written.
func leftovers(t *testing.T, dataDir string) []string {
	t.Helper()
	var out []string
	ents, _ := os.ReadDir(filepath.Join(dataDir, "apps", "web", "releases"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, "releases/"+e.Name())
		}
	}
	tmp, _ := os.ReadDir(filepath.Join(dataDir, "objects", "tmp"))
	for _, e := range tmp {
		out = append(out, "objects/tmp/"+e.Name())
	}
	packs, _ := os.ReadDir(filepath.Join(dataDir, "apps", "web", "cache.git", "objects", "pack"))
	for _, e := range packs {
		if strings.HasPrefix(e.Name(), "tmp_") {
			out = append(out, "cache.git/objects/pack/"+e.Name())
		}
	}
	return out
}

// waitFor polls cond every 20ms for at most d, and says whether it became true.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

func fmtDur(d time.Duration) string { return fmt.Sprint(d.Round(time.Millisecond)) }
