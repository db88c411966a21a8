package procgroup

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// OutputGrace bounds how long Run waits for the output of a process that escaped the group
// (setsid) and still holds the output pipe once the group is gone.
const OutputGrace = 500 * time.Millisecond

// Run starts cmd (made with exec.CommandContext) in a process group of its own with its
// stdout and stderr both going to out, and waits for it. started, unless nil, is given the
// group's id once it runs: a caller that can die without running its own cleanup (kill
// -9) records it, so that its next life can end the group (KillLeft). When cmd's context is done, the
// whole group gets stop (SIGTERM lets a script clean up, and cmd.WaitDelay then bounds it;
// SIGKILL ends a check at once). Once cmd exits, whatever it left in its group is killed,
// and Run returns when the output is read: at once, or after OutputGrace when a process
// outside the group still holds the pipe. Its error is cmd.Start's or cmd.Wait's.
//
// The output goes through an *os.File pipe rather than an io.Writer cmd copies itself, so
// Wait returns when the process exits, not when every holder of the pipe has closed it.
func Run(cmd *exec.Cmd, out io.Writer, stop syscall.Signal, started func(pgid int)) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return Kill(cmd.Process.Pid, stop) }
	err = cmd.Start()
	w.Close()
	if err != nil {
		return err
	}
	if started != nil {
		started(cmd.Process.Pid)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(out, r) // a read error only cuts the output short
	}()
	werr := cmd.Wait()
	_ = Kill(cmd.Process.Pid, syscall.SIGKILL) // fails only with EPERM, which cannot be for our own child's group
	select {
	case <-read:
	case <-time.After(OutputGrace):
		r.Close() // a process outside the group holds the pipe: stop reading
		<-read
	}
	return werr
}

// Kill sends sig to the process group led by pid; a group that is gone already is no
// error.
func Kill(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
