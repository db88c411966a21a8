package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/pushdeploy/pushdeploy/state"
)

// agentProc is the real `pushdeploy agent`, run as a child in its own process group with
// its log (JSON lines, stdout and stderr) in a file.
type agentProc struct {
	Addr string // webhook listener, read from the "agent started" log line

	bin, config, logPath string
	cmd                  *exec.Cmd
	exited               chan struct{} // closed once cmd.Wait returned
	waitErr              error
}

// startAgent starts the agent and waits until it logs that it listens.
func startAgent(bin, config, logPath string) (*agentProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "agent", "--config", config, "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	a := &agentProc{bin: bin, config: config, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() { // stop waits for it
		a.waitErr = cmd.Wait()
		close(a.exited)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if addr := a.listenAddr(); addr != "" {
			a.Addr = addr
			return a, nil
		}
		select {
		case <-a.exited:
			return a, fmt.Errorf("agent exited at start (%v)", a.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return a, errors.New("agent did not log \"agent started\" within 15s")
}

// listenAddr finds the "agent started" line in the log and returns its listen field.
func (a *agentProc) listenAddr() string {
	data, _ := os.ReadFile(a.logPath)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Message string `json:"message"`
			Listen  string `json:"listen"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "agent started" && line.Listen != "" {
			return line.Listen
		}
	}
	return ""
}

// Exited reports whether the agent has stopped on its own.
func (a *agentProc) Exited() error {
	select {
	case <-a.exited:
		return fmt.Errorf("agent exited unexpectedly (%v)", a.waitErr)
	default:
		return nil
	}
}

// Stop sends SIGTERM to the agent's process group, waits up to 15 s for it to drain, then
// kills the group. It returns an error when the agent did not exit cleanly.
func (a *agentProc) Stop() error {
	pgid := a.cmd.Process.Pid
	select {
	case <-a.exited:
		syscall.Kill(-pgid, syscall.SIGKILL) // anything it left behind
		return fmt.Errorf("agent had exited (%v)", a.waitErr)
	default:
	}
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-a.exited:
		syscall.Kill(-pgid, syscall.SIGKILL)
		if a.waitErr != nil {
			return fmt.Errorf("agent exit after SIGTERM: %w", a.waitErr)
		}
		return nil
	case <-time.After(15 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-a.exited
		return errors.New("agent did not stop within 15s of SIGTERM: killed")
	}
}

// ResetPeakRSS starts a new measurement of the agent's peak resident set size.
func (a *agentProc) ResetPeakRSS() error { return resetPeakRSS(a.cmd.Process.Pid) }

// PeakRSS is the agent's peak resident set size, in bytes, since the last ResetPeakRSS.
func (a *agentProc) PeakRSS() (int64, error) { return peakRSS(a.cmd.Process.Pid) }

// RSS is the agent's resident set size now, in bytes.
func (a *agentProc) RSS() (int64, error) { return rss(a.cmd.Process.Pid) }

// CPUTime is the CPU time the agent has used since it started.
func (a *agentProc) CPUTime() (time.Duration, error) { return cpuTime(a.cmd.Process.Pid) }

// LogTail returns the last n lines of the agent's log.
func (a *agentProc) LogTail(n int) string {
	data, err := os.ReadFile(a.logPath)
	if err != nil {
		return fmt.Sprintf("(read agent log: %v)", err)
	}
	return tail(string(data), n)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// CLI runs `pushdeploy ARGS --config CONFIG` and returns its stdout.
func (a *agentProc) CLI(ctx context.Context, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, a.bin, append(args, "--config", a.config)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("pushdeploy %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// deployRecord is a deploy as the agent's admin API answers it, with its own log.
type deployRecord struct {
	state.Deploy
	Log string `json:"-"` // the deploy's own log, JSON lines
}

// phase is how long the step the deploy logged with message took, from the line's took_ms
// (or took) field, or 0 when the log has no such line.
func (d *deployRecord) phase(message string) time.Duration {
	for _, line := range strings.Split(d.Log, "\n") {
		var l struct {
			Message string   `json:"message"`
			TookMS  *float64 `json:"took_ms"`
			Took    *float64 `json:"took"` // zerolog's Dur: milliseconds by default
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Message != message {
			continue
		}
		switch {
		case l.TookMS != nil:
			return time.Duration(*l.TookMS * float64(time.Millisecond))
		case l.Took != nil:
			return time.Duration(*l.Took * float64(time.Millisecond))
		}
	}
	return 0
}

// WaitDeploy polls `pushdeploy history bench ID --json` until the deploy is final. Any
// final status but succeeded is an error carrying the deploy's error and log.
func (a *agentProc) WaitDeploy(ctx context.Context, app, id string, timeout time.Duration) (*deployRecord, error) {
	deadline := time.Now().Add(timeout)
	var last deployRecord
	var lastErr error
	for time.Now().Before(deadline) {
		if err := a.Exited(); err != nil {
			return nil, err
		}
		out, err := a.CLI(ctx, "history", app, id, "--json")
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		lastErr = err
		if err == nil {
			var got struct {
				Deploy deployRecord `json:"deploy"`
				Log    string       `json:"log"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				return nil, fmt.Errorf("pushdeploy history %s %s --json: %w", app, id, err)
			}
			last = got.Deploy
			last.Log = got.Log
			switch last.Status {
			case "succeeded":
				return &last, nil
			case "failed", "stale", "superseded":
				return nil, fmt.Errorf("deploy %s of %.12s ended %s: %s%s\ndeploy log:\n%s",
					id, last.SHA, last.Status, last.Error, last.Note, tail(got.Log, 40))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lastErr != nil {
		return nil, fmt.Errorf("deploy %s: not final after %s: %w", id, timeout, lastErr)
	}
	return nil, fmt.Errorf("deploy %s: still %q after %s", id, last.Status, timeout)
}
