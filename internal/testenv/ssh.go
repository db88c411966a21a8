package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSH is an OpenSSH server on 127.0.0.1 that serves the git repositories of the machine to
// one deploy key, the way GitHub serves a repository to a deploy key.
type SSH struct {
	Port           int
	KeyFile        string // the client's private deploy key
	KnownHostsFile string // pins the server's host key
	OtherHostsFile string // a known_hosts file pinning some other key, for refusal tests
}

// URL is the ssh:// URL of the repository at the absolute path.
func (s *SSH) URL(path string) string {
	return fmt.Sprintf("ssh://root@127.0.0.1:%d%s", s.Port, path)
}

// StartSSH starts sshd in its own process group with a fresh host key and deploy key, and
// stops it in t.Cleanup. It calls Unavailable when OpenSSH's server is not installed or
// the test does not run as root (sshd must be able to switch to the login user).
func StartSSH(t testing.TB) *SSH {
	t.Helper()
	needGit(t)
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if sshd = "/usr/sbin/sshd"; !fileExists(sshd) {
			Unavailable(t, "sshd", "not installed (Debian package openssh-server)")
		}
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "sshd", "needs root to switch to the login user")
	}
	// sshd insists on its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		Unavailable(t, "sshd", "create its privilege separation directory: %v", err)
	}
	dir := t.TempDir()
	keygen := func(name string) {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", filepath.Join(dir, name)).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	keygen("host")
	keygen("other")
	keygen("deploy")
	pub := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("authorized_keys", pub("deploy")+"\n")
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		cfg := write("sshd_config", strings.Join([]string{
			fmt.Sprintf("Port %d", port),
			"ListenAddress 127.0.0.1",
			"HostKey " + filepath.Join(dir, "host"),
			"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
			"PubkeyAuthentication yes",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PermitRootLogin prohibit-password",
			"StrictModes no",
			"UsePAM no",
			"PidFile " + filepath.Join(dir, "sshd.pid"),
			"SetEnv GIT_CONFIG_NOSYSTEM=1",
		}, "\n")+"\n")
		cmd := exec.Command(sshd, "-D", "-e", "-f", cfg)
		cmd.Stderr = &testLogWriter{t: t, prefix: "sshd: "}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start sshd: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() { killGroup(cmd.Process.Pid, exited) }
		if waitTCP(fmt.Sprintf("127.0.0.1:%d", port), exited) {
			t.Cleanup(stop)
			hostLine := func(key string) string {
				f := strings.Fields(pub(key))
				return fmt.Sprintf("[127.0.0.1]:%d %s %s\n", port, f[0], f[1])
			}
			return &SSH{
				Port:           port,
				KeyFile:        filepath.Join(dir, "deploy"),
				KnownHostsFile: write("known_hosts", hostLine("host")),
				OtherHostsFile: write("other_hosts", hostLine("other")),
			}
		}
		stop()
	}
	t.Fatal("sshd did not start")
	return nil
}

// waitTCP waits until addr accepts connections, or the process behind it exits.
func waitTCP(addr string, exited <-chan struct{}) bool {
	return waitReady(exited, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// waitReady polls ready every 20ms for at most 10s, until it reports true (true) or the
// server's process exits (false).
func waitReady(exited <-chan struct{}, ready func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ready() {
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
