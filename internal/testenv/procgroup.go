package testenv

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// killGroup kills the process group led by pgid and returns once no live process is left
// in it, not merely once the leader was reaped: a daemon's forked workers (haproxy's
// worker, git daemon's upload-packs) are orphaned when the leader dies and close their
// listening sockets only when they themselves finish exiting. Without this wait, a test
// that checks the port is free after cleanup, or the next server given that port, races
// the dying worker. exited is closed once the leader was reaped. Zombies count as gone:
// their files are closed, and in a container whose PID 1 does not reap they stay forever.
func killGroup(pgid int, exited <-chan struct{}) {
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-exited
	deadline := time.Now().Add(10 * time.Second)
	for groupAlive(pgid) && time.Now().Before(deadline) {
		syscall.Kill(-pgid, syscall.SIGKILL) // one forked while the first signal went out
		time.Sleep(5 * time.Millisecond)
	}
}

// groupAlive reports whether a process other than a zombie is in process group pgid.
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 3 || string(f[0]) == "Z" || string(f[0]) == "X" {
			continue
		}
		if g, err := strconv.Atoi(string(f[2])); err == nil && g == pgid {
			return true
		}
	}
	return false
}
