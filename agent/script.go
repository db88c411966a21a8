package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/internal/procgroup"
)

// scriptRun is one run of an app's deploy script.
type scriptRun struct {
	Argv    []string // program and fixed arguments from the config
	Args    []string // repo, branch, sha
	Env     []string
	Dir     string
	Timeout time.Duration
	// Redact masks the app's secrets in each line the script prints (a script that
	// sources the environment file may print them), before it is logged.
	Redact func(string) string
	// Started, unless nil, is given the script's process group once it runs.
	Started func(pgid int)
}

// scriptPath is the PATH scripts run with: they get a known environment, not the agent's.
const scriptPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// run execs the script without a shell, in its own process group (procgroup.Run), and logs
// each line it prints. It fails if the script exits non-zero, is killed by a signal or
// outlives its timeout; on timeout or cancellation the whole group gets SIGTERM, then
// SIGKILL; whatever it leaves in its group is killed when it exits.
func (s scriptRun) run(ctx context.Context, log zerolog.Logger) error {
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, s.Argv[0], append(append([]string{}, s.Argv[1:]...), s.Args...)...)
	cmd.Dir = s.Dir
	cmd.Env = append([]string{scriptPath, "LANG=C.UTF-8"}, s.Env...)
	cmd.WaitDelay = 5 * time.Second // after SIGTERM to the group, then SIGKILL
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if s.Redact != nil {
				line = s.Redact(line)
			}
			log.Info().Str("line", line).Msg("script output")
		}
		_, _ = io.Copy(io.Discard, pr) // past an over-long line: drain, so the script never blocks
	}()
	start := time.Now()
	log.Info().Strs("argv", cmd.Args).Msg("script starting")
	err := procgroup.Run(cmd, pw, syscall.SIGTERM, s.Started)
	pw.Close()
	<-done
	if err == nil {
		log.Info().Int64("took_ms", time.Since(start).Milliseconds()).Msg("script succeeded")
		return nil
	}
	var exit *exec.ExitError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("script %s: timed out after %s", s.Argv[0], s.Timeout)
	case ctx.Err() != nil:
		return fmt.Errorf("script %s: %w", s.Argv[0], ctx.Err())
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("script %s: killed by signal %s", s.Argv[0], ws.Signal())
		}
		return fmt.Errorf("script %s: exited with status %d", s.Argv[0], exit.ExitCode())
	default:
		return fmt.Errorf("run script %s: %w", s.Argv[0], err)
	}
}
