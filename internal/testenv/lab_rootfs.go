package testenv

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LabSuite is the Debian release of a lab host's rootfs (Debian 12).
const LabSuite = "bookworm"

// LabBasePackages are what debootstrap adds to minbase for every lab host: systemd as
// PID 1 (systemd, systemd-sysv), the system bus systemctl and DynamicUser= need (dbus),
// python3 (ansible's modules and the tests' network probes), and the tools the README's
// "Install on a host" has the operator run (openssl: secret and certificate;
// openssh-client: ssh-keygen, ssh-keyscan), haproxy for the ansible role's haproxy piece
// (installed, not started at boot: trimRootfs disables it, so a host runs it only when a
// test or the role enables it) and procps (the /bin/kill haproxy.service reloads with, on
// every Debian but minbase). They are in one list so that one cached rootfs serves every
// lab test: CI builds it once. A .deb meant for a minimal host may depend only on what
// minbase, systemd and dbus hold; LabOptions.Packages adds more.
var LabBasePackages = []string{"systemd", "systemd-sysv", "dbus", "python3", "openssl", "openssh-client", "haproxy", "procps"}

// rootfsRecipe names what buildRootfs does after debootstrap; change it when that changes,
// so every cache built the old way is rebuilt.
const rootfsRecipe = "v2"

// rootfsTimeouts bound a cold build (about a minute on a good link) and the wait for
// another process building the same cache.
const (
	rootfsBuildTimeout = 12 * time.Minute
	rootfsLockTimeout  = 15 * time.Minute
)

// rootfsDir returns the cache directory for packages under cacheDir: its name holds a hash
// of the suite, the recipe and the sorted package list, so a changed list is a new cache.
func rootfsDir(cacheDir string, packages []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s minbase %s\n", LabSuite, rootfsRecipe)
	for _, p := range packages {
		fmt.Fprintln(h, p)
	}
	return filepath.Join(cacheDir, "rootfs-"+LabSuite+"-"+hex.EncodeToString(h.Sum(nil))[:12])
}

// labPackages returns the base packages and extra, sorted, without duplicates.
func labPackages(extra []string) []string {
	ps := slices.Concat(LabBasePackages, extra)
	slices.Sort(ps)
	return slices.Compact(ps)
}

// errNoRootfs is returned by ensureRootfs when the machine cannot build the cache: a
// program missing, no mirror configured, no network. The lab is then unavailable, not
// broken.
var errNoRootfs = errors.New("cannot build the lab rootfs")

// ensureRootfs returns the directory of a complete rootfs with packages, building it first
// when missing. Concurrent callers (other test binaries, other checkouts) serialize on
// DIR.lock: one builds, the others wait and reuse it; DIR/.complete marks a finished build,
// so one killed halfway is rebuilt. built reports whether this call built it. An error
// wrapping errNoRootfs means this machine cannot build it.
func ensureRootfs(ctx context.Context, cacheDir string, packages []string, logf func(string, ...any)) (dir string, built bool, err error) {
	dir = rootfsDir(cacheDir, packages)
	marker := filepath.Join(dir, ".complete")
	if _, err := os.Stat(marker); err == nil {
		return dir, false, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", false, fmt.Errorf("%w: %w", errNoRootfs, err)
	}
	unlock, err := lockFile(ctx, dir+".lock", rootfsLockTimeout)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if _, err := os.Stat(marker); err == nil {
		return dir, false, nil // built by another process while this one waited
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", false, fmt.Errorf("%w: debootstrap not installed (Debian package debootstrap)", errNoRootfs)
	}
	mirror, err := aptMirror(LabSuite)
	if err != nil {
		return "", false, fmt.Errorf("%w: %w", errNoRootfs, err)
	}
	if err := mirrorReachable(ctx, mirror, LabSuite); err != nil {
		return "", false, fmt.Errorf("%w: no network to the Debian mirror: %w", errNoRootfs, err)
	}
	logf("lab: building rootfs %s from %s (debootstrap, about a minute; cached for later runs)", dir, mirror)
	if err := buildRootfs(ctx, dir, mirror, packages); err != nil {
		return "", false, err
	}
	return dir, true, nil
}

// buildRootfs runs debootstrap into dir (removing what a killed build left there) and
// trims the result into a template: no machine-id (each host gets its own at boot), no
// apt caches, a neutral hostname and hosts file. debootstrap runs in a private mount
// namespace, so the /proc and /sys it mounts in the target never outlive it, even when it
// fails halfway.
func buildRootfs(ctx context.Context, dir, mirror string, packages []string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove partial rootfs: %w", err)
	}
	logPath := dir + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(ctx, rootfsBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--",
		"debootstrap", "--variant=minbase", "--include="+strings.Join(packages, ","), LabSuite, dir, mirror)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap %s: %w (log %s):\n%s", dir, err, logPath, tail(logPath, 20))
	}
	if err := trimRootfs(dir); err != nil {
		return fmt.Errorf("trim rootfs %s: %w", dir, err)
	}
	f, err := os.Create(filepath.Join(dir, ".complete"))
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func trimRootfs(dir string) error {
	for _, glob := range []string{"var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"} {
		paths, _ := filepath.Glob(filepath.Join(dir, glob))
		for _, p := range paths {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(filepath.Join(dir, "var/lib/dbus/machine-id")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Installed for the tests that configure it, not running in every host.
	if err := os.Remove(filepath.Join(dir, "etc/systemd/system/multi-user.target.wants/haproxy.service")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	files := map[string]string{
		"etc/machine-id": "", // empty: systemd makes one up at each host's first boot
		"etc/hostname":   "lab\n",
		"etc/hosts":      "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// lockFile takes an exclusive flock on path, waiting up to timeout, and returns the
// function that releases it.
func lockFile(ctx context.Context, path string, timeout time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoRootfs, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) || ctx.Err() != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// aptSources are the files apt reads its sources from, deb822 first.
var aptSources = []string{"/etc/apt/sources.list.d/*.sources", "/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list"}

// aptMirror returns the Debian mirror this machine's apt is configured with for suite,
// so the rootfs comes from where the machine's own packages come from (a local mirror, a
// proxy) and no host name is written into the project.
func aptMirror(suite string) (string, error) {
	for _, glob := range aptSources {
		paths, _ := filepath.Glob(glob)
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			parse := mirrorFromList
			if strings.HasSuffix(p, ".sources") {
				parse = mirrorFromDeb822
			}
			if m := parse(string(b), suite); m != "" {
				return m, nil
			}
		}
	}
	return "", fmt.Errorf("no enabled 'deb' source for %s in %s", suite, strings.Join(aptSources, ", "))
}

// mirrorFromDeb822 returns the first URI of the first enabled stanza of a deb822 .sources
// file that has type deb and suite, or "".
func mirrorFromDeb822(text, suite string) string {
	for stanza := range strings.SplitSeq(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		key := ""
		sc := bufio.NewScanner(strings.NewReader(stanza))
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "#"):
			case strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t"):
				if key != "" {
					fields[key] += " " + strings.TrimSpace(line)
				}
			default:
				k, v, ok := strings.Cut(line, ":")
				if !ok {
					continue
				}
				key = strings.ToLower(strings.TrimSpace(k))
				fields[key] = strings.TrimSpace(v)
			}
		}
		if strings.EqualFold(fields["enabled"], "no") ||
			!slices.Contains(strings.Fields(fields["types"]), "deb") ||
			!slices.Contains(strings.Fields(fields["suites"]), suite) {
			continue
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			if usableMirror(uri) {
				return strings.TrimSuffix(uri, "/")
			}
		}
	}
	return ""
}

// mirrorFromList returns the URI of the first "deb URI SUITE …" line of a one-line-style
// sources.list that names suite, or "".
func mirrorFromList(text, suite string) string {
	for line := range strings.SplitSeq(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=…]
			i := slices.IndexFunc(f, func(s string) bool { return strings.HasSuffix(s, "]") })
			if i < 0 {
				continue
			}
			f = f[i+1:]
		}
		if len(f) >= 2 && f[1] == suite && usableMirror(f[0]) {
			return strings.TrimSuffix(f[0], "/")
		}
	}
	return ""
}

// usableMirror reports whether debootstrap can fetch from uri.
func usableMirror(uri string) bool {
	for _, scheme := range []string{"http://", "https://", "file:/"} {
		if strings.HasPrefix(uri, scheme) {
			return true
		}
	}
	return false
}

// mirrorReachable fetches the suite's Release file, so a machine without network skips
// the lab instead of failing halfway through debootstrap.
func mirrorReachable(ctx context.Context, mirror, suite string) error {
	if strings.HasPrefix(mirror, "file:") {
		_, err := os.Stat(strings.TrimPrefix(strings.TrimPrefix(mirror, "file:"), "//") + "/dists/" + suite + "/Release")
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, mirror+"/dists/"+suite+"/Release", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	return nil
}

// tail returns the last n lines of the file at path, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
