package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/usermanager"
)

// cgroupTree is one cgroup subtree: the same path in each hierarchy systemd tracks
// processes in (usermanager.CgroupHierarchies), so a booted host's systemd and everything
// it starts stay together and apart from the machine's and other hosts' processes.
type cgroupTree []string

func (c cgroupTree) sub(name string) cgroupTree {
	s := make(cgroupTree, len(c))
	for i, d := range c {
		s[i] = filepath.Join(d, name)
	}
	return s
}

func (c cgroupTree) create() error {
	for _, d := range c {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup: %w", err)
		}
	}
	return nil
}

// pids returns the processes in the subtree, in any hierarchy, each once.
func (c cgroupTree) pids() []int { return usermanager.CgroupPIDs(c) }

// drain waits up to timeout for the subtree to hold no process, then kills what is left
// and returns an error naming it: a process that outlives its host is a leak.
func (c cgroupTree) drain(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for len(c.pids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	left := c.pids()
	if len(left) == 0 {
		return nil
	}
	var names []string
	for _, pid := range left {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		names = append(names, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(comm))))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; len(c.pids()) > 0 && i < 200; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("processes left in cgroup %s after %v, killed: %s", c[0], timeout, strings.Join(names, ", "))
}

// remove removes the subtree from every hierarchy, deepest directories first (the
// host's systemd made its own below ours). A subtree already gone is not an error.
func (c cgroupTree) remove() error { return usermanager.RemoveCgroupTrees(c) }

// exists reports whether any directory of the subtree is still there.
func (c cgroupTree) exists() bool {
	return slices.ContainsFunc(c, func(d string) bool {
		_, err := os.Stat(d)
		return err == nil
	})
}
