package usermanager

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Process is a process identified beyond its pid: pids are reused.
type Process struct {
	PID   int
	Start uint64 // clock ticks after boot (/proc/PID/stat field 22)
}

// FindProcess returns the process running as pid now, or an error when there is none.
func FindProcess(pid int) (Process, error) {
	start, err := processStart(pid)
	if err != nil {
		return Process{}, err
	}
	return Process{PID: pid, Start: start}, nil
}

func (p Process) String() string { return strconv.Itoa(p.PID) }

// Alive reports whether p is still running, or a zombie nobody has reaped.
func (p Process) Alive() bool {
	start, err := processStart(p.PID)
	return err == nil && start == p.Start
}

func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold anything.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// Processes returns every process in the manager's cgroup subtrees: the launcher,
// journald, dbus-daemon, the manager and every unit's processes. After Stop there are
// none.
func (m *Manager) Processes() []Process {
	roots := make([]string, len(m.tracked))
	for i, h := range m.tracked {
		roots[i] = filepath.Join(h, m.Cgroup)
	}
	var ps []Process
	for _, pid := range CgroupPIDs(roots) {
		if p, err := FindProcess(pid); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func (m *Manager) killAll() {
	for _, p := range m.Processes() {
		syscall.Kill(p.PID, syscall.SIGKILL)
	}
}

// Cgroups returns the directories of the manager's cgroup subtree that exist, one per
// mounted hierarchy it has one in (v1 controllers included, where systemd creates units'
// cgroups). After Stop there are none.
func (m *Manager) Cgroups() ([]string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, mt := range mounts {
		d := filepath.Join(mt.dir, m.Cgroup)
		if _, err := os.Stat(d); err == nil {
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

// removeCgroups removes the manager's subtree from every cgroup hierarchy: the ones Start
// created and the ones systemd created for units in v1 controllers. Directories are
// removed deepest first.
func (m *Manager) removeCgroups() error {
	roots, err := m.Cgroups()
	if err != nil {
		return err
	}
	return RemoveCgroupTrees(roots)
}

type cgroupMount struct {
	dir     string
	fstype  string // cgroup or cgroup2
	options string // super options: the v1 controllers, name=systemd
}

// cgroupMounts lists the mounted cgroup hierarchies.
func cgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []cgroupMount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup/systemd rw,… shared:9 - cgroup cgroup rw,name=systemd
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || (qf[0] != "cgroup" && qf[0] != "cgroup2") {
			continue
		}
		ms = append(ms, cgroupMount{dir: unescapeMount(pf[4]), fstype: qf[0], options: qf[2]})
	}
	return ms, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// trackingHierarchies returns the cgroup hierarchies systemd keeps its processes in,
// checking they are writable: the unified one on a cgroup v2 host; name=systemd and, if
// mounted, the unified one on a v1 (hybrid) host. Each manager gets a subtree of its own
// there, so two managers on one host never share a unit's cgroup (a stop would kill the
// other's processes).
func trackingHierarchies() ([]string, error) {
	ms, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var v2, named []string
	for _, m := range ms {
		switch {
		case m.fstype == "cgroup2":
			v2 = append(v2, m.dir)
		case slices.Contains(strings.Split(m.options, ","), "name=systemd"):
			named = append(named, m.dir)
		}
	}
	var dirs []string
	switch {
	case len(named) > 0:
		dirs = append(named[:1], v2...)
	case len(v2) > 0:
		dirs = v2[:1]
	default:
		return nil, errors.New("no cgroup2 or name=systemd hierarchy mounted")
	}
	for _, d := range dirs {
		if err := unix.Access(d, unix.W_OK); err != nil {
			return nil, fmt.Errorf("cgroup hierarchy %s not writable: %w", d, err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err != nil {
			return nil, fmt.Errorf("cgroup hierarchy %s: %w", d, err)
		}
		if st.Flags&unix.ST_RDONLY != 0 {
			return nil, fmt.Errorf("cgroup hierarchy %s mounted read-only", d)
		}
	}
	return dirs, nil
}
