package release_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/githttp"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
)

// stress is set by make stress: the large repositories at their full size.
var stress = os.Getenv("PUSHDEPLOY_STRESS") != ""

// childEnv makes the test binary a child that fetches and builds one release, then prints
// its own peak RSS: see TestMain.
const childEnv = "PUSHDEPLOY_TEST_BUILD_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(buildChild(spec))
	}
	os.Exit(m.Run())
}

// buildChild fetches and builds the release spec names ("cache dir|url|sha|data dir") in a
// process of its own, so that its peak RSS is the deploy's alone, and prints it.
func buildChild(spec string) int {
	f := strings.Split(spec, "|")
	if len(f) != 4 {
		fmt.Fprintf(os.Stderr, "%s: want cache|url|sha|data, got %q\n", childEnv, spec)
		return 2
	}
	base, err := rss("VmRSS")
	if err == nil {
		err = func() error {
			c, err := release.OpenCache(f[0], release.Remote{URL: f[1]})
			if err != nil {
				return err
			}
			if _, err := c.Fetch(context.Background(), f[2], branch); err != nil {
				return err
			}
			_, err = release.NewStore(datadir.Layout{Root: f[3]}).Build(context.Background(), app, c, f[2], release.Info{})
			return err
		}()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	peak, err := rss("VmHWM")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("baseline %d peak %d\n", base, peak)
	return 0
}

// rss reads a size in bytes from this process's /proc/self/status: VmRSS now, or VmHWM,
// the peak.
func rss(field string) (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}

// TestStore_Build_LargeMemory fetches and builds a release of one large file, and one of
// many files, each in a child process, and bounds the child's peak RSS to a fixed amount
// above what it started with, whatever the size of the files or their number: no blob is
// ever held whole. make test runs them small; make stress at 200 MB and 50,000 files.
// Under the race detector the figures are only logged.
func TestStore_Build_LargeMemory(t *testing.T) {
	big, files := int64(16<<20), 2000
	if stress {
		big, files = 200<<20, 50000
	}
	const most = 48 << 20 // buffers, caches, indexes, the runtime
	tests := []struct {
		name    string
		gen     func(w *bufio.Writer)
		maxPeak int64 // above the child's baseline
	}{
		{fmt.Sprintf("one file of %d MiB", big>>20), func(w *bufio.Writer) {
			blob(w, 1, big, 1)
			fmt.Fprintf(w, "%sM 100644 :1 big.bin\n\n", commitHeader)
		}, most},
		{fmt.Sprintf("%d files", files), func(w *bufio.Writer) {
			for i := range files {
				blob(w, i+1, int64(512+i%2048), uint64(i))
			}
			w.WriteString(commitHeader)
			for i := range files {
				fmt.Fprintf(w, "M 100644 :%d d%03d/f%06d.txt\n", i+1, i%500, i)
			}
			w.WriteString("\n")
		}, most},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := testenv.NewRoot(t)
			bare := testenv.NewBare(t, root, "acme/web.git", true)
			start := time.Now()
			sha := fastImport(t, bare.Path(), tt.gen)
			t.Logf("generated in %s", time.Since(start).Round(time.Millisecond))

			cacheDir, data := filepath.Join(t.TempDir(), "cache.git"), t.TempDir()
			start = time.Now()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+strings.Join([]string{cacheDir, testenv.FileURL(bare.Path()), sha, data}, "|"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("fetch and build in a child: %v\n%s", err, stderr.String())
			}
			took := time.Since(start)
			var base, peak int64
			if _, err := fmt.Sscanf(string(out), "baseline %d peak %d", &base, &peak); err != nil {
				t.Fatalf("child said %q: %v", out, err)
			}
			t.Logf("fetch and build in %s: peak RSS %d MiB (%d MiB at start)", took.Round(time.Millisecond), peak>>20, base>>20)
			if raceDetector {
				t.Log("the race detector is on: peak RSS not bounded")
			} else if peak-base > tt.maxPeak {
				t.Errorf("peak RSS: got %d MiB above the start, want at most %d MiB", (peak-base)>>20, tt.maxPeak>>20)
			}

			if stress { // the peer: git clone of the same commit, its peak RSS
				clone := exec.Command("git", "clone", "-q", "--depth", "1", "--branch", branch, testenv.FileURL(bare.Path()), filepath.Join(t.TempDir(), "clone"))
				clone.Env = append(os.Environ(), githttp.Env...)
				start := time.Now()
				if out, err := clone.CombinedOutput(); err != nil {
					t.Fatalf("git clone: %v\n%s", err, out)
				}
				ru := clone.ProcessState.SysUsage().(*syscall.Rusage)
				t.Logf("git clone --depth 1 in %s: peak RSS %d MiB", time.Since(start).Round(time.Millisecond), ru.Maxrss>>10)
			}

			c, err := release.OpenCache(cacheDir, release.Remote{URL: testenv.FileURL(bare.Path())})
			if err != nil {
				t.Fatal(err)
			}
			diffs, err := release.NewStore(datadir.Layout{Root: data}).Check(t.Context(), app, sha, c)
			if err != nil || len(diffs) != 0 {
				t.Errorf("Check: got %d differences (%v), %v, want none", len(diffs), first(diffs), err)
			}
		})
	}
}

func first(d []release.Difference) any {
	if len(d) == 0 {
		return nil
	}
	return d[0]
}

const commitHeader = "commit refs/heads/" + branch + "\n" +
	"committer Test <test@pushdeploy.invalid> 1700000000 +0000\ndata 5\nlarge\n"

// blob writes a fast-import blob of size pseudo-random (incompressible) bytes as mark.
func blob(w *bufio.Writer, mark int, size int64, seed uint64) {
	fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n", mark, size)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	io.CopyN(w, rand.NewChaCha8(key), size)
	w.WriteString("\n")
}

// fastImport runs git fast-import in the bare repository dir with what gen writes (blobs
// stored uncompressed: the content is random) and returns the commit it made.
func fastImport(t *testing.T, dir string, gen func(w *bufio.Writer)) string {
	t.Helper()
	cmd := exec.Command("git", "-c", "pack.compression=0", "-c", "core.compression=0", "fast-import", "--quiet", "--done")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), githttp.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("git fast-import: %v", err)
	}
	w := bufio.NewWriterSize(stdin, 1<<20)
	gen(w)
	w.WriteString("done\n")
	werr := w.Flush()
	stdin.Close()
	if err := cmd.Wait(); err != nil || werr != nil {
		t.Fatalf("git fast-import: %v, %v\n%s", err, werr, stderr.String())
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "refs/heads/"+branch).Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	return strings.TrimSpace(string(out))
}
