package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// diskUsage is what `du -s` reports, in bytes: the blocks really allocated to root and
// everything under it (directories and symlinks included), each inode counted once however
// many hard links it has. Directories named in skip are left out.
func diskUsage(root string, skip ...string) (int64, error) {
	type inode struct{ dev, ino uint64 }
	seen := make(map[inode]bool)
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && slices.Contains(skip, d.Name()) && p != root {
			return filepath.SkipDir
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		k := inode{uint64(st.Dev), st.Ino}
		if !seen[k] {
			seen[k] = true
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("disk usage of %s: %w", root, err)
	}
	return total, nil
}

// packBytes is the total size of the packs in a git objects directory.
func packBytes(objects string) (int64, error) {
	ents, err := os.ReadDir(filepath.Join(objects, "pack"))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".pack") {
			fi, err := e.Info()
			if err != nil {
				return 0, err
			}
			n += fi.Size()
		}
	}
	return n, nil
}

// cloneResult is one `git clone --depth 1`.
type cloneResult struct {
	Seconds   float64 `json:"seconds"`
	PackBytes int64   `json:"pack_bytes"`   // .git/objects/pack/*.pack
	WireBytes int64   `json:"wire_bytes"`   // response bytes the server sent
	SyncSecs  float64 `json:"sync_seconds"` // a sync(2) right after: writing the clone to disk
	// PeakRSS is the largest peak resident set size of git clone and the git processes it
	// waited for (index-pack, remote-http): wait4's ru_maxrss, in bytes.
	PeakRSS int64 `json:"peak_rss_bytes"`
	// CPUSecs is the CPU time, user and system, of git clone and the git processes it waited
	// for: on a busy machine a steadier comparison than wall time.
	CPUSecs float64 `json:"cpu_seconds"`
	// Load is the 1-minute load average as the clone started: how busy the machine was.
	Load float64 `json:"load_average"`
}

// timeClone clones branch of url with depth 1 into the new directory dir.
func timeClone(ctx context.Context, srv *gitServer, url, branch, dir string) (cloneResult, error) {
	var res cloneResult
	cmd := exec.CommandContext(ctx, "git", "clone", "--quiet", "--depth", "1", "--branch", branch, url, dir)
	cmd.Env = gitEnv()
	syscall.Sync() // start with nothing of earlier steps waiting to be written
	res.Load = loadAverage()
	sent := srv.Sent()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	res.Seconds = time.Since(start).Seconds()
	res.WireBytes = srv.Sent() - sent
	if err != nil {
		return res, fmt.Errorf("git clone --depth 1 %s: %w\n%s", url, err, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.PeakRSS = ru.Maxrss << 10 // kilobytes on Linux
	}
	res.CPUSecs = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	start = time.Now()
	syscall.Sync()
	res.SyncSecs = time.Since(start).Seconds()
	res.PackBytes, err = packBytes(filepath.Join(dir, ".git", "objects"))
	return res, err
}

// removeAll removes a tree the bench made, making read-only directories writable first
// if a plain removal fails.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
