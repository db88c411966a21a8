package procgroup

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// KillLeft ends a process group that Run started for a parent which then died without
// waiting for it (an agent killed with SIGKILL goes without its cleanup): its script would
// go on running beside the one its next life starts. The group is killed with SIGKILL only
// if one of its processes has marker (e.g. "PUSHDEPLOY_DEPLOY_ID=<id>") in its
// environment, which tells the recorded group from a new one that reused its id; then
// KillLeft waits up to wait for every process of the group to be gone. It returns how many
// processes the group had.
func KillLeft(pgid int, marker string, wait time.Duration) (int, error) {
	if pgid <= 1 {
		return 0, fmt.Errorf("kill left process group %d: not a group a script runs in", pgid)
	}
	members, err := Members(pgid)
	if err != nil {
		return 0, err
	}
	ours := false
	for _, pid := range members {
		if env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ"); err == nil {
			ours = ours || bytes.Contains(append([]byte{0}, env...), append(append([]byte{0}, marker...), 0))
		}
	}
	if !ours {
		return 0, nil
	}
	if err := Kill(pgid, syscall.SIGKILL); err != nil {
		return len(members), fmt.Errorf("kill left process group %d: %w", pgid, err)
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		left, err := Members(pgid)
		if err != nil || len(left) == 0 {
			return len(members), err
		}
		if time.Now().After(deadline) {
			return len(members), fmt.Errorf("kill left process group %d: %d processes still there after %v", pgid, len(left), wait)
		}
	}
}

// Members lists the live processes of process group pgid, from /proc. Zombies are not
// listed: their files are closed, and where PID 1 does not reap they stay forever.
func Members(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp …: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		var state byte
		var ppid, pgrp int
		if _, err := fmt.Sscanf(string(stat[i+1:]), " %c %d %d", &state, &ppid, &pgrp); err != nil {
			continue
		}
		if pgrp == pgid && state != 'Z' && state != 'X' {
			out = append(out, pid)
		}
	}
	return out, nil
}
