package units

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// TestLoad_refusesNonRegular gives Load a release whose service.json (or, for ndm,
// package.json) is not a regular file of the release: each is refused at once, with an
// error naming the file and what it is, and nothing behind a symlink is read.
func TestLoad_refusesNonRegular(t *testing.T) {
	outside := t.TempDir()
	fifo := filepath.Join(outside, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(outside, "secret.json")
	if err := os.WriteFile(secret, []byte(`{"services": {"web": {"command": "/bin/SECRET"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const native = `{"services": {"web": {"command": "/bin/true"}}}`
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"symlink to /etc/passwd", func(t *testing.T, dir string) { symlink(t, "/etc/passwd", dir, FileName) },
			`service.json: not a regular file (symlink to "/etc/passwd")`},
		{"symlink to a readable json outside", func(t *testing.T, dir string) { symlink(t, secret, dir, FileName) },
			`service.json: not a regular file (symlink to "` + secret + `")`},
		{"symlink to a fifo outside", func(t *testing.T, dir string) { symlink(t, fifo, dir, FileName) },
			`service.json: not a regular file (symlink to "` + fifo + `")`},
		{"symlink inside the release", func(t *testing.T, dir string) {
			write(t, dir, "real.json", native)
			symlink(t, "real.json", dir, FileName)
		}, `service.json: not a regular file (symlink to "real.json")`},
		{"fifo in the release", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, FileName), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "service.json: not a regular file (fifo)"},
		{"directory", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, FileName), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "service.json: not a regular file (directory)"},
		{"huge file", func(t *testing.T, dir string) {
			write(t, dir, FileName, `{"services": {}, "x": "`+strings.Repeat("a", MaxFileSize)+`"}`)
		}, "service.json: 1048601 bytes, larger than 1048576: refused"},
		{"ndm package.json symlink to a fifo", func(t *testing.T, dir string) {
			write(t, dir, FileName, `{"web": {}}`)
			symlink(t, fifo, dir, "package.json")
		}, `package.json: not a regular file (symlink to "` + fifo + `")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			start := time.Now()
			spec, err := Load(dir)
			if took := time.Since(start); took > time.Second {
				t.Errorf("Load took %v: it must never wait", took)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, %v; want an error with %q", spec, err, tt.want)
			}
			if strings.Contains(tt.want, "not a regular file") && !errors.Is(err, ErrNotRegular) {
				t.Errorf("got %v, want it to wrap ErrNotRegular", err)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "root:") {
				t.Errorf("the error quotes what is behind the symlink: %v", err)
			}
		})
	}
}

// TestLoad_device refuses a device node without opening it.
func TestLoad_device(t *testing.T) {
	dir := t.TempDir()
	// /dev/null's numbers (1, 3): opening it would not hurt, but Load must not even try.
	if err := syscall.Mknod(filepath.Join(dir, FileName), syscall.S_IFCHR|0o644, 1<<8|3); err != nil {
		testenv.Unavailable(t, "root", "mknod a device node: %v", err)
	}
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "service.json: not a regular file (character device)") {
		t.Fatalf("got %v, want a refused character device", err)
	}
}

// TestLoad_nativeIgnoresPackageJSON reads package.json only for an ndm service.json: a
// native one's package.json, whatever it is, is none of Load's business.
func TestLoad_nativeIgnoresPackageJSON(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, FileName, `{"services": {"web": {"command": "/bin/true"}}}`)
	symlink(t, "/etc/passwd", dir, "package.json")
	if _, err := Load(dir); err != nil {
		t.Fatalf("native service.json beside a symlinked package.json: %v", err)
	}
}

func symlink(t *testing.T, target, dir, name string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
