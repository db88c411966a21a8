package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// resetPeakRSS makes the kernel forget process pid's peak resident set size (VmHWM), so
// that the next peakRSS is the peak since now. Writing "5" to clear_refs does that (Linux
// 4.0 and later); the bench owns the process, so it may.
func resetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of pid %d: %w", pid, err)
	}
	return nil
}

// peakRSS is process pid's peak resident set size in bytes since it started or since the
// last resetPeakRSS: VmHWM in /proc/<pid>/status.
func peakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// rss is process pid's resident set size in bytes now: VmRSS in /proc/<pid>/status.
func rss(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// statusBytes is a "kB" field of /proc/<pid>/status, in bytes.
func statusBytes(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s of pid %d: %w", field, pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s of pid %d: %q: %w", field, pid, rest, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%s of pid %d: not in /proc/%d/status", field, pid, pid)
}

// cpuTime is the CPU time, user and system, process pid and the children it waited for
// have used so far: utime, stime, cutime and cstime in /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	rest := string(data[bytes.LastIndexByte(data, ')')+1:])
	f := strings.Fields(rest) // f[0] is field 3, the state
	if len(f) < 15 {
		return 0, fmt.Errorf("cpu time of pid %d: short /proc/%d/stat", pid, pid)
	}
	var ticks int64
	for _, s := range f[11:15] { // fields 14-17
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// loadAverage is the machine's 1-minute load average (/proc/loadavg), 0 if unknown: on a
// machine shared with other work, what a time was measured under.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
