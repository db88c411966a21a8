package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	helloOnce sync.Once
	helloBin  []byte
	helloErr  error
)

// HelloBinary builds the demo's sample HTTP server (scripts/demo/hello) once per test
// binary and returns its content: a static binary a release can run under the hardened
// units, as a real app would ship. It answers / with its release's VERSION and /health
// with ok, on 127.0.0.1:$PORT.
func HelloBinary(t testing.TB) string {
	t.Helper()
	helloOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hello-bin-")
		if err != nil {
			helloErr = err
			return
		}
		defer os.RemoveAll(dir)
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "hello"), "github.com/pushdeploy/pushdeploy/scripts/demo/hello")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			helloErr = fmt.Errorf("build hello: %v\n%s", err, out)
			return
		}
		helloBin, helloErr = os.ReadFile(filepath.Join(dir, "hello"))
	})
	if helloErr != nil {
		t.Fatal(helloErr)
	}
	return string(helloBin)
}

// DataDirOutsideTmp is a data directory, removed in t.Cleanup, whose releases the apps'
// services can see: PrivateTmp hides /tmp from them.
func DataDirOutsideTmp(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/lib", "pushdeploy-test-")
	if err != nil {
		Unavailable(t, "data directory outside /tmp", "%v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// FreePorts finds n consecutive free ports on 127.0.0.1 and returns the first: the apps'
// instances take port, port+1, ….
func FreePorts(t testing.TB, n int) int {
	t.Helper()
	for base := 21000 + os.Getpid()%2000*8; base < 60000; base += n {
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free ports")
	return 0
}
