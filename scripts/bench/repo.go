package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os/exec"
	"path"
	"strings"
)

// repoSpec describes the generated repository. The same spec always gives the same
// commits (fixed seed, fixed dates), so runs are comparable.
type repoSpec struct {
	Files    int    // regular files in the first version
	Bytes    int64  // their total size, about
	Dirs     int    // leaf directories the files are spread over
	Exec     int    // of the files, how many are executable
	Symlinks int    // symlinks to files elsewhere in the tree
	Versions int    // commits; each one changes one file of the previous
	Seed     uint64 // for sizes, names and content
}

// genRepo is what generate made.
type genRepo struct {
	Commits  []string // commit ids, oldest first
	Files    int      // regular files
	Exec     int
	Symlinks int
	Dirs     int   // directories, leaves and their parents
	Bytes    int64 // total size of the regular files of the first version
	Changed  []string
}

type genFile struct {
	path string
	size int
	exec bool
}

// layout decides names, sizes and modes: leaf directories pkgNN/modNN, file sizes from a
// log-normal distribution scaled to the wanted total (most files a few KiB, a few of
// several hundred KiB, like a real app with its vendored assets).
func (s repoSpec) layout(rng *rand.Rand) (files []genFile, links map[string]string, dirs int) {
	const top = 20
	perTop := max(1, s.Dirs/top)
	leaves := make([]string, 0, top*perTop)
	for t := range top {
		for m := range perTop {
			leaves = append(leaves, fmt.Sprintf("pkg%02d/mod%02d", t, m))
		}
	}
	raw := make([]float64, s.Files)
	var sum float64
	for i := range raw {
		raw[i] = math.Exp(rng.NormFloat64())
		sum += raw[i]
	}
	scale := float64(s.Bytes) / sum
	files = make([]genFile, s.Files)
	for i := range files {
		dir := leaves[rng.IntN(len(leaves))]
		files[i] = genFile{
			path: fmt.Sprintf("%s/file%05d.dat", dir, i),
			size: max(1, int(raw[i]*scale)),
		}
	}
	for _, i := range rng.Perm(s.Files)[:min(s.Exec, s.Files)] {
		files[i].exec = true
		files[i].path = strings.TrimSuffix(files[i].path, ".dat") + ".sh"
	}
	links = make(map[string]string, s.Symlinks)
	for i := range s.Symlinks {
		target := files[rng.IntN(len(files))].path
		dir := leaves[rng.IntN(len(leaves))]
		// A relative link from dir (two levels deep) to the target.
		links[fmt.Sprintf("%s/link%03d", dir, i)] = "../../" + target
	}
	return files, links, len(leaves) + top
}

// content writes size pseudo-random (incompressible) bytes for file i as it is in version v.
func content(w io.Writer, seed uint64, i, v, size int) error {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(i))
	binary.LittleEndian.PutUint64(key[16:], uint64(v))
	_, err := io.CopyN(w, rand.NewChaCha8(key), int64(size))
	return err
}

// generate writes the spec's history into the bare repository dir with git fast-import
// (one pack, no loose objects, in seconds) on ref, and returns the commits.
func generate(ctx context.Context, dir, ref string, s repoSpec) (*genRepo, error) {
	rng := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	files, links, dirs := s.layout(rng)

	cmd := exec.CommandContext(ctx, "git", "fast-import", "--quiet", "--done")
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start git fast-import: %w", err)
	}
	out := &genRepo{Files: len(files), Symlinks: len(links), Dirs: dirs}
	werr := func() error {
		w := bufio.NewWriterSize(stdin, 1<<20)
		modeOf := func(f genFile) string {
			if f.exec {
				return "100755"
			}
			return "100644"
		}
		// Blobs first, marked :1…, then the first commit lists them all.
		for i, f := range files {
			fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n", i+1, f.size)
			if err := content(w, s.Seed, i, 0, f.size); err != nil {
				return err
			}
			w.WriteString("\n")
			out.Bytes += int64(f.size)
			if f.exec {
				out.Exec++
			}
		}
		commit := func(v int, msg string) {
			when := 1700000000 + int64(v)*3600
			fmt.Fprintf(w, "commit %s\nauthor Bench <bench@pushdeploy.invalid> %d +0000\n"+
				"committer Bench <bench@pushdeploy.invalid> %d +0000\ndata %d\n%s\n", ref, when, when, len(msg), msg)
		}
		commit(0, "bench: version 1")
		for i, f := range files {
			fmt.Fprintf(w, "M %s :%d %s\n", modeOf(f), i+1, f.path)
		}
		for _, name := range sortedKeys(links) {
			target := links[name]
			fmt.Fprintf(w, "M 120000 inline %s\ndata %d\n%s\n", name, len(target), target)
		}
		w.WriteString("\n")
		// Each later version rewrites one file, same size, new content.
		for v := 1; v < s.Versions; v++ {
			i := rng.IntN(len(files))
			f := files[i]
			commit(v, fmt.Sprintf("bench: version %d, %s changed", v+1, path.Base(f.path)))
			fmt.Fprintf(w, "M %s inline %s\ndata %d\n", modeOf(f), f.path, f.size)
			if err := content(w, s.Seed, i, v, f.size); err != nil {
				return err
			}
			w.WriteString("\n\n")
			out.Changed = append(out.Changed, f.path)
		}
		w.WriteString("done\n")
		if err := w.Flush(); err != nil {
			return err
		}
		return stdin.Close()
	}()
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("git fast-import: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if werr != nil {
		return nil, fmt.Errorf("write to git fast-import: %w", werr)
	}
	list, err := gitOutput(ctx, dir, "rev-list", "--reverse", ref)
	if err != nil {
		return nil, err
	}
	out.Commits = strings.Fields(list)
	if len(out.Commits) != s.Versions {
		return nil, fmt.Errorf("generated %d commits, want %d", len(out.Commits), s.Versions)
	}
	return out, nil
}

// generateBare creates the bare repository dir holding the spec's versions, without the
// deploy branch: each version appears on it when "pushed", the first one too, so that the
// agent's catch-up at start finds nothing to deploy and the first deploy measured is the
// webhook's, fetch included. The server allows fetching any reachable commit by id, as
// GitHub does.
func generateBare(ctx context.Context, dir string, s repoSpec) (*genRepo, error) {
	if _, err := gitOutput(ctx, "", "init", "--quiet", "--bare", dir); err != nil {
		return nil, err
	}
	if _, err := gitOutput(ctx, dir, "config", "uploadpack.allowReachableSHA1InWant", "true"); err != nil {
		return nil, err
	}
	gen, err := generate(ctx, dir, "refs/bench/versions", s)
	if err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"update-ref", "-d", "refs/bench/versions"},
		{"symbolic-ref", "HEAD", "refs/heads/" + branch},
	} {
		if _, err := gitOutput(ctx, dir, args...); err != nil {
			return nil, err
		}
	}
	return gen, nil
}
