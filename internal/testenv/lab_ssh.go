package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LabSSH is the machine's OpenSSH server running in a lab's network namespace on
// BridgeIP:22, serving the git repositories under a root directory to the keys it is given,
// the way a git server serves a repository to deploy keys. Hosts reach it as
// root@<BridgeIP>:owner/repo.git (scp-like; the path is relative to the root directory).
type LabSSH struct {
	authorized string // the AuthorizedKeysFile
}

// GitSSH starts sshd in the lab's network namespace on BridgeIP:22, with a fresh host key
// and no authorized key yet (Authorize adds them), serving the repositories under root: a
// login runs only the git command the client asked for, in root. It is stopped in
// t.Cleanup. It calls Unavailable when OpenSSH's server is not installed.
func (l *Lab) GitSSH(t testing.TB, root string) *LabSSH {
	t.Helper()
	needGit(t)
	sshd := "/usr/sbin/sshd"
	if !fileExists(sshd) {
		Unavailable(t, "sshd", "not installed (Debian package openssh-server)")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // its privilege separation directory
		Unavailable(t, "sshd", "create its privilege separation directory: %v", err)
	}
	dir := t.TempDir()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	s := &LabSSH{authorized: filepath.Join(dir, "authorized_keys")}
	cfg := filepath.Join(dir, "sshd_config")
	conf := strings.Join([]string{
		"Port 22",
		"ListenAddress " + l.BridgeIP.String(),
		"HostKey " + filepath.Join(dir, "host"),
		"AuthorizedKeysFile " + s.authorized,
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"StrictModes no",
		"UsePAM no",
		"PidFile none",
		"SetEnv GIT_CONFIG_NOSYSTEM=1",
		// git-upload-pack 'acme/web.git' then resolves under root, as on a git server.
		`ForceCommand cd "` + root + `" && exec sh -c "$SSH_ORIGINAL_COMMAND"`,
	}, "\n") + "\n"
	for p, data := range map[string]string{cfg: conf, s.authorized: ""} {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := l.Command(context.Background(), sshd, "-D", "-e", "-f", cfg)
	cmd.Stderr = &testLogWriter{t: t, prefix: "lab sshd: "}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd in the lab: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // waited for by the cleanup, through exited
	t.Cleanup(func() { killGroup(cmd.Process.Pid, exited) })
	addr := net.JoinHostPort(l.BridgeIP.String(), "22")
	if !waitReady(exited, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		c, err := l.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("sshd in the lab does not listen on %s", addr)
	}
	return s
}

// Authorize lets the public key (an authorized_keys line, e.g. a host's id_ed25519.pub)
// log in.
func (s *LabSSH) Authorize(t testing.TB, pub string) {
	t.Helper()
	f, err := os.OpenFile(s.authorized, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.TrimSpace(pub) + "\n"); err != nil {
		t.Fatal(err)
	}
}
