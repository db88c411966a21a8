package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/usermanager"
)

func TestAptMirror(t *testing.T) {
	const debian = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`
	deb822, list := mirrorFromDeb822, mirrorFromList
	tests := []struct {
		name  string
		parse func(text, suite string) string
		text  string
		want  string
	}{
		{"deb822", deb822, debian, "http://deb.debian.org/debian"},
		{"deb822 security only", deb822, "Types: deb\nURIs: http://s.example/debian-security\nSuites: bookworm-security\n", ""},
		{"deb822 disabled", deb822, "Enabled: no\nTypes: deb\nURIs: http://a.example/debian\nSuites: bookworm\n\n" +
			"Types: deb deb-src\nURIs: cdrom:/x/ https://b.example/debian/\nSuites: bookworm\n", "https://b.example/debian"},
		{"deb822 deb-src only", deb822, "Types: deb-src\nURIs: http://a.example/debian\nSuites: bookworm\n", ""},
		{"deb822 other suite", deb822, "Types: deb\nURIs: http://a.example/debian\nSuites: trixie\n", ""},
		{"deb822 continued field", deb822, "Types: deb\nURIs:\n http://a.example/debian\nSuites: bookworm\n", "http://a.example/debian"},
		{"list", list, "deb http://a.example/debian bookworm main\n", "http://a.example/debian"},
		{"list options", list, "deb [arch=amd64 signed-by=/k.gpg] http://a.example/debian/ bookworm main contrib\n", "http://a.example/debian"},
		{"list security first", list, "deb http://s.example/debian-security bookworm-security main\ndeb http://a.example/debian bookworm main\n", "http://a.example/debian"},
		{"list commented", list, "# deb http://a.example/debian bookworm main\n", ""},
		{"list deb-src", list, "deb-src http://a.example/debian bookworm main\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.parse(tt.text, "bookworm"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRootfsDir(t *testing.T) {
	base := rootfsDir("/c", labPackages(nil))
	if got := rootfsDir("/c", labPackages([]string{"python3", "dbus"})); got != base {
		t.Errorf("base packages again: got %s, want %s", got, base)
	}
	if got := rootfsDir("/c", labPackages([]string{"curl"})); got == base {
		t.Errorf("with curl: got the base cache %s, want another", got)
	}
	if !strings.HasPrefix(base, "/c/rootfs-bookworm-") {
		t.Errorf("got %s, want /c/rootfs-bookworm-<hash>", base)
	}
}

// labRun is what a lab left behind to check once its test's cleanups ran.
type labRun struct {
	lab       *Lab
	netns     string // the lab namespace, "net:[inode]"
	processes []usermanager.Process
}

// runLab runs body on a new lab in a subtest, so that the lab's and its hosts' cleanups
// have run when it returns, then checks they left nothing: no process, cgroup, mount,
// directory or network namespace, and the machine's network as it was.
func runLab(t *testing.T, body func(t *testing.T, l *Lab, r *labRun)) {
	before := machineNetwork(t)
	var r labRun
	t.Run("lab", func(t *testing.T) {
		start := time.Now()
		r.lab = StartLab(t, LabOptions{})
		t.Logf("lab ready in %v", time.Since(start).Round(time.Millisecond))
		var err error
		if r.netns, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/net", r.lab.holder.Process.Pid)); err != nil {
			t.Fatal(err)
		}
		r.processes = append(r.processes, processOf(t, r.lab.holder.Process.Pid))
		body(t, r.lab, &r)
		if got := machineNetwork(t); got != before {
			t.Errorf("machine network changed while the lab runs:\n%s\nwant:\n%s", got, before)
		}
		checkNoMounts(t, r.lab)
	})
	if got := machineNetwork(t); got != before {
		t.Errorf("machine network changed by the lab:\n%s\nwant:\n%s", got, before)
	}
	if r.lab == nil || r.lab.holder == nil {
		return // skipped, or failed before there was anything to leave
	}
	for _, p := range r.processes {
		if p.Alive() {
			t.Errorf("process %d outlived the lab", p.PID)
		}
	}
	if r.lab.cgroup.exists() {
		t.Errorf("cgroup %s left: %v", r.lab.cgroup[0], r.lab.cgroup.pids())
	}
	if _, err := os.Stat(r.lab.dir); !os.IsNotExist(err) {
		t.Errorf("run directory %s left (%v)", r.lab.dir, err)
	}
	if pids := netnsMembers(r.netns); len(pids) > 0 {
		t.Errorf("processes still in the lab network namespace %s: %v", r.netns, pids)
	}
	checkNoMounts(t, r.lab)
}

func TestLab(t *testing.T) {
	runLab(t, func(t *testing.T, l *Lab, r *labRun) {
		start := time.Now()
		hosts := []*Host{l.Boot(t, "h1"), l.Boot(t, "h2")}
		t.Logf("2 hosts booted in %v", time.Since(start).Round(time.Millisecond))

		// A server of the test on the bridge address: "outside" as the hosts see it.
		ln, err := l.Listen("tcp", l.BridgeIP.String()+":8000")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "lab\n")
		})}
		go srv.Serve(ln) // returns once Close in cleanup closed the listener
		t.Cleanup(func() { srv.Close() })

		ids := map[string]string{}
		for _, h := range hosts {
			r.processes = append(r.processes, processOf(t, h.Leader()))
			if got := h.Exec(t, "hostname"); got != h.Name {
				t.Errorf("%s: hostname %q, want %q", h.Name, got, h.Name)
			}
			id := h.Exec(t, "cat", "/etc/machine-id")
			if other, dup := ids[id]; dup || len(id) != 32 {
				t.Errorf("%s: machine-id %q (also %s's), want a distinct one", h.Name, id, other)
			}
			ids[id] = h.Name
			h.WriteFile(t, "/srv/www/whoami", []byte(h.Name+"\n"), 0o644)
			h.Exec(t, "systemd-run", "--quiet", "--unit", "lab-web", "-p", "DynamicUser=yes",
				"python3", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/srv/www")
		}

		ports, err := l.Command(t.Context(), "ip", "-o", "link", "show", "master", labBridge).Output()
		if err != nil {
			t.Fatalf("ip link in the lab: %v", err)
		}
		if n := strings.Count(string(ports), "\n"); n != len(hosts) {
			t.Errorf("%d ports on %s, want %d:\n%s", n, labBridge, len(hosts), ports)
		}

		client := l.HTTPClient()
		for _, h := range hosts {
			url := fmt.Sprintf("http://%s:8080/whoami", h.IP())
			if got := pollGet(t, client, url); got != h.Name {
				t.Errorf("GET %s from the lab: %q, want %q", url, got, h.Name)
			}
			assertDynamicUser(t, h, "lab-web")
		}

		// Each host reaches the other and the bridge.
		const fetch = `import sys, urllib.request
for u in sys.argv[1:]:
    print(urllib.request.urlopen(u, timeout=5).read().decode().strip())`
		for i, h := range hosts {
			other := hosts[1-i]
			got := h.Exec(t, "python3", "-c", fetch,
				fmt.Sprintf("http://%s:8080/whoami", other.IP()), fmt.Sprintf("http://%s:8000/", l.BridgeIP))
			if want := other.Name + "\nlab"; got != want {
				t.Errorf("%s fetched %q, want %q", h.Name, got, want)
			}
		}
		for _, h := range hosts {
			t.Logf("%s: %d processes, PSS %d MiB", h.Name, len(h.Processes()), pssKiB(h.Processes())/1024)
		}
	})
}

func TestLab_Reboot(t *testing.T) {
	runLab(t, func(t *testing.T, l *Lab, r *labRun) {
		h := l.Boot(t, "h1")
		h.WriteFile(t, "/srv/www/whoami", []byte("h1\n"), 0o644)
		unit := filepath.Join(t.TempDir(), "lab-web.service")
		if err := os.WriteFile(unit, []byte(`[Unit]
Description=lab web server

[Service]
DynamicUser=yes
ExecStart=/usr/bin/python3 -m http.server 8080 --bind 0.0.0.0 --directory /srv/www

[Install]
WantedBy=multi-user.target
`), 0o644); err != nil {
			t.Fatal(err)
		}
		h.CopyIn(t, unit, "/etc/systemd/system/lab-web.service")
		h.Exec(t, "systemctl", "enable", "--now", "lab-web.service")
		id := h.Exec(t, "cat", "/etc/machine-id")
		pid := h.Exec(t, "systemctl", "show", "-p", "MainPID", "--value", "lab-web")
		r.processes = append(r.processes, processOf(t, h.Leader()))

		h.Reboot(t)
		r.processes = append(r.processes, processOf(t, h.Leader()))
		if got := h.Exec(t, "systemctl", "is-enabled", "lab-web"); got != "enabled" {
			t.Errorf("after reboot: lab-web %s, want enabled", got)
		}
		if got := h.Exec(t, "systemctl", "show", "-p", "MainPID", "--value", "lab-web"); got == pid || got == "0" {
			t.Errorf("after reboot: lab-web MainPID %s (before %s), want a new process", got, pid)
		}
		url := fmt.Sprintf("http://%s:8080/whoami", h.IP())
		if got := pollGet(t, l.HTTPClient(), url); got != "h1" {
			t.Errorf("after reboot: GET %s: %q, want %q", url, got, "h1")
		}
		assertDynamicUser(t, h, "lab-web")
		if got := h.Exec(t, "cat", "/etc/machine-id"); got != id {
			t.Errorf("after reboot: machine-id %s, want %s", got, id)
		}
		if got := h.Exec(t, "journalctl", "--list-boots", "-q"); strings.Count(got, "\n") != 1 {
			t.Errorf("journalctl --list-boots: got\n%s\nwant 2 boots", got)
		}
	})
}

// assertDynamicUser checks that unit's main process runs as a dynamic user.
func assertDynamicUser(t *testing.T, h *Host, unit string) {
	t.Helper()
	if got := h.Exec(t, "systemctl", "show", "-p", "DynamicUser", "--value", unit); got != "yes" {
		t.Errorf("%s: %s DynamicUser=%s, want yes", h.Name, unit, got)
	}
	pid := h.Exec(t, "systemctl", "show", "-p", "MainPID", "--value", unit)
	uid, err := strconv.Atoi(h.Exec(t, "stat", "-c", "%u", "/proc/"+pid))
	if err != nil || uid < 61184 || uid > 65519 {
		t.Errorf("%s: %s runs as uid %d (%v), want a dynamic one (61184–65519)", h.Name, unit, uid, err)
	}
}

// pollGet GETs url with client until it answers 200 (a server just started), for up to
// 10 s, and returns the body, trimmed.
func pollGet(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			last = err
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			return strings.TrimSpace(string(body))
		}
		last = fmt.Errorf("%s: %v", resp.Status, err)
	}
	t.Fatalf("GET %s: %v", url, last)
	return ""
}

// machineNetwork is the machine's own network configuration, which a lab must never
// change.
func machineNetwork(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-o", "link"}, {"-o", "addr"}, {"route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"}, {"rule"}, {"netns"},
	} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		fmt.Fprintf(&b, "$ ip %s\n%s", strings.Join(args, " "), out)
	}
	fwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	fmt.Fprintf(&b, "ip_forward %s", fwd)
	return b.String()
}

// checkNoMounts fails the test if a mount of the machine refers to the lab: the overlays
// live only in the hosts' private mount namespaces.
func checkNoMounts(t *testing.T, l *Lab) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, l.dir) || strings.Contains(line, l.Rootfs) || strings.Contains(line, "pushdeploy-lab") {
			t.Errorf("machine mount refers to the lab: %s", line)
		}
	}
}

// processOf identifies pid beyond its number, to check later that it is gone.
func processOf(t *testing.T, pid int) usermanager.Process {
	t.Helper()
	p, err := usermanager.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// netnsMembers returns the threads (of any process, the test's included) in the network
// namespace ns ("net:[inode]"), as "pid/tid (comm)".
func netnsMembers(ns string) []string {
	links, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	var members []string
	for _, l := range links {
		if got, err := os.Readlink(l); err == nil && got == ns {
			f := strings.Split(l, "/") // "", proc, PID, task, TID, ns, net
			comm, _ := os.ReadFile(filepath.Join("/proc", f[2], "comm"))
			members = append(members, fmt.Sprintf("%s/%s (%s)", f[2], f[4], bytes.TrimSpace(comm)))
		}
	}
	return members
}

// pssKiB sums the proportional set size of pids, in KiB.
func pssKiB(pids []int) int {
	total := 0
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.Atoi(f[1])
				total += kb
			}
		}
	}
	return total
}
