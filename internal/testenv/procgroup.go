package testenv

import (
	"syscall"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/procgroup"
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
	members, err := procgroup.Members(pgid)
	return err == nil && len(members) > 0
}
