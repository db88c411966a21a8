package usermanager

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CgroupHierarchies returns the mounted cgroup hierarchies systemd keeps its processes in,
// each checked writable: the unified one on a cgroup v2 machine; name=systemd and, if
// mounted, the unified one on a v1 (hybrid) machine. A program that runs a systemd of its
// own (a user manager here, a booted container in internal/testenv) puts it in a subtree
// of its own in each of them. An error says why there is none usable.
func CgroupHierarchies() ([]string, error) { return trackingHierarchies() }

// CgroupPIDs returns the pids in the cgroup subtrees rooted at roots (the same subtree in
// several hierarchies, typically), each once. A missing root holds none.
func CgroupPIDs(roots []string) []int {
	var pids []int
	for _, root := range roots {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for f := range strings.FieldsSeq(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// RemoveCgroupTrees removes the cgroup subtrees rooted at roots, deepest directories first
// (a cgroup directory is removable only once it has no children and no processes). A
// missing one is not an error.
func RemoveCgroupTrees(roots []string) error {
	var errs []error
	for _, root := range roots {
		var dirs []string
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for _, d := range slices.Backward(dirs) {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
