package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// crashRepo is a work repository of thousands of files that changes a lot at every commit:
// contents rewritten, files added and removed (whole directories too), exec bits flipped,
// symlinks retargeted. Its commits are what the crash test deploys.
type crashRepo struct {
	t     testing.TB
	repo  *testenv.Repo
	rng   *rand.Rand
	files map[string]bool // regular files and symlinks, by path
	next  int             // for new names
}

// newCrashRepo writes n files in nested directories, the hello server as bin/hello and a
// service.json of two instances on ports port and port+1, health-checked over HTTP.
func newCrashRepo(t testing.TB, rng *rand.Rand, n, port int) *crashRepo {
	r := &crashRepo{t: t, repo: testenv.NewRepo(t), rng: rng, files: map[string]bool{}}
	r.repo.Write("bin/hello", testenv.HelloBinary(t), 0o755)
	r.repo.Write("service.json", fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": %d,
  "health": {"http": "/health", "interval": "50ms", "min_healthy_time": "50ms", "healthy_deadline": "30s"},
  "rollout": {"max_parallel": 1}}}}`, port), 0o644)
	for range n {
		r.add()
	}
	return r
}

// add writes a new file (or, one time in fifty, a symlink to another file).
func (r *crashRepo) add() {
	r.next++
	p := fmt.Sprintf("d%02d/s%d/f%05d", r.rng.IntN(40), r.rng.IntN(4), r.next)
	if r.rng.IntN(50) == 0 && len(r.files) > 0 {
		r.repo.Symlink(p+".link", r.linkTarget(p))
		r.files[p+".link"] = true
		return
	}
	r.write(p)
	r.files[p] = true
}

// write gives the file at p new random content, executable one time in twenty.
func (r *crashRepo) write(p string) {
	mode := os.FileMode(0o644)
	if r.rng.IntN(20) == 0 {
		mode = 0o755
	}
	b := make([]byte, 256+r.rng.IntN(6<<10))
	for i := range b {
		b[i] = byte('a' + r.rng.IntN(26))
	}
	r.repo.Write(p, string(b), mode)
}

// linkTarget is a relative path from p's directory to some file, which may be gone later
// (a dangling symlink is a symlink all the same).
func (r *crashRepo) linkTarget(p string) string {
	to := r.pick()
	rel, err := filepath.Rel(filepath.Dir(p), to)
	if err != nil {
		r.t.Fatal(err)
	}
	return rel
}

// pick returns a random existing path, in an order fixed by the seed.
func (r *crashRepo) pick() string {
	keys := make([]string, 0, len(r.files))
	for k := range r.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[r.rng.IntN(len(keys))]
}

// change rewrites a tenth of the files, adds and removes a fiftieth (now and then a whole
// directory), retargets symlinks and sets VERSION, then commits.
func (r *crashRepo) change(version string) string {
	n := len(r.files)
	for range n / 10 {
		p := r.pick()
		if strings.HasSuffix(p, ".link") {
			r.repo.Symlink(p, r.linkTarget(p))
		} else {
			r.write(p)
		}
	}
	for range n / 50 {
		r.add()
	}
	for range n / 50 {
		p := r.pick()
		r.repo.Remove(p)
		delete(r.files, p)
	}
	if r.rng.IntN(4) == 0 {
		dir := filepath.Dir(r.pick())
		r.repo.Remove(dir)
		for p := range r.files {
			if filepath.Dir(p) == dir {
				delete(r.files, p)
			}
		}
	}
	return r.commit(version)
}

func (r *crashRepo) commit(version string) string {
	r.repo.Write("VERSION", version+"\n", 0o644)
	return r.repo.Commit("version " + version)
}
