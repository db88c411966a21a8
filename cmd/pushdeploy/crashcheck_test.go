package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// archiveEntry is one path of `git archive`: a directory, a file (content, exec bit) or a
// symlink (target).
type archiveEntry struct {
	dir, exec bool
	link      string
	isLink    bool
	data      []byte
}

// gitArchive reads `git archive` of commit sha from the bare repository into a map by path.
func gitArchive(bare, sha string) (map[string]archiveEntry, error) {
	cmd := exec.Command("git", "-C", bare, "archive", "--format=tar", sha)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git archive %.12s: %v: %s", sha, err, stderr.String())
	}
	want := map[string]archiveEntry{}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return want, nil
		}
		if err != nil {
			return nil, fmt.Errorf("git archive %.12s: %w", sha, err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		switch h.Typeflag {
		case tar.TypeXGlobalHeader:
		case tar.TypeDir:
			want[name] = archiveEntry{dir: true}
		case tar.TypeSymlink:
			want[name] = archiveEntry{isLink: true, link: h.Linkname}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("git archive %.12s: %s: %w", sha, name, err)
			}
			want[name] = archiveEntry{exec: h.Mode&0o100 != 0, data: data}
		default:
			return nil, fmt.Errorf("git archive %.12s: %s: unexpected type %c", sha, name, h.Typeflag)
		}
	}
}

// diffTree compares the directory dir with `git archive` of sha: every path, each file's
// content and exec bit, each symlink's target, and no path more. It returns the differences
// (at most a few, then a count).
func diffTree(bare, sha, dir string) ([]string, error) {
	want, err := gitArchive(bare, sha)
	if err != nil {
		return nil, err
	}
	var diffs []string
	seen := map[string]bool{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		seen[rel] = true
		w, ok := want[rel]
		if !ok {
			diffs = append(diffs, rel+": not in the commit")
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch typ := d.Type(); {
		case typ.IsDir():
			if !w.dir {
				diffs = append(diffs, rel+": a directory, want a file")
				return fs.SkipDir
			}
		case typ&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if !w.isLink || target != w.link {
				diffs = append(diffs, fmt.Sprintf("%s: symlink to %q, want %+v", rel, target, w.link))
			}
		case typ.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if w.dir || w.isLink || !bytes.Equal(data, w.data) {
				diffs = append(diffs, fmt.Sprintf("%s: content differs (%d bytes, want %d)", rel, len(data), len(w.data)))
			}
			if exec := fi.Mode()&0o100 != 0; exec != w.exec {
				diffs = append(diffs, fmt.Sprintf("%s: exec bit %v, want %v", rel, exec, w.exec))
			}
		default:
			diffs = append(diffs, fmt.Sprintf("%s: unexpected file type %v", rel, typ))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", dir, err)
	}
	for p := range want {
		if !seen[p] {
			diffs = append(diffs, p+": missing")
		}
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("… and %d more", len(diffs)-5))
	}
	return diffs, nil
}

// leftovers lists what an interrupted operation left in the data directory and no start
// cleaned: temporary release directories, temporary objects, temporary files of an atomic
// write or link, temporary packs and indexes of the git cache, an index without its pack,
// and metadata of a release that does not exist.
func leftovers(dirs datadir.Layout, app string) []string {
	var out []string
	tmpName := regexp.MustCompile(`^\..*\.tmp-|^tmp_|^\.build-`)
	releases := dirs.Releases(app)
	filepath.WalkDir(dirs.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		parent := filepath.Dir(p)
		switch {
		case parent == releases && !strings.HasPrefix(d.Name(), "."):
			return fs.SkipDir // a release's own files are diffTree's
		case parent == dirs.Objects() && len(d.Name()) == 2:
			return fs.SkipDir
		case p == dirs.ObjectsTmp():
			if ents, _ := os.ReadDir(p); len(ents) > 0 {
				out = append(out, fmt.Sprintf("%s: %d temporary object directories", p, len(ents)))
			}
			return fs.SkipDir
		}
		if tmpName.MatchString(d.Name()) {
			out = append(out, p)
		}
		if strings.HasSuffix(d.Name(), ".idx") {
			if _, err := os.Stat(strings.TrimSuffix(p, ".idx") + ".pack"); err != nil {
				out = append(out, p+": an index without its pack")
			}
		}
		if parent == filepath.Dir(dirs.Meta(app, "x")) && strings.HasSuffix(d.Name(), ".json") {
			if _, err := os.Lstat(dirs.Release(app, strings.TrimSuffix(d.Name(), ".json"))); err != nil {
				out = append(out, p+": metadata of a release that does not exist")
			}
		}
		return nil
	})
	return out
}

var releaseRE = regexp.MustCompile(`/apps/[a-z0-9_-]+/releases/([0-9a-f]{40})`)

// unitProblems checks the app's installed unit files: each names only releases that exist,
// and (after a deploy settled) only the current one.
func unitProblems(sd *testenv.Systemd, dirs datadir.Layout, app, current string) []string {
	var out []string
	n := 0
	filepath.WalkDir(sd.UnitDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(filepath.Base(p), "pushdeploy-"+app+"-") &&
			!strings.HasPrefix(filepath.Base(filepath.Dir(p)), "pushdeploy-"+app+"-") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", p, err))
			return nil
		}
		n++
		for _, m := range releaseRE.FindAllStringSubmatch(string(data), -1) {
			if _, err := os.Stat(dirs.Release(app, m[1])); err != nil {
				out = append(out, fmt.Sprintf("%s names release %.12s, which does not exist", filepath.Base(p), m[1]))
			} else if m[1] != current {
				out = append(out, fmt.Sprintf("%s names release %.12s, not the current %.12s", filepath.Base(p), m[1], current))
			}
		}
		return nil
	})
	if n == 0 {
		out = append(out, "no unit file installed")
	}
	// An atomic write of a unit killed before its rename leaves a temporary file.
	ents, _ := os.ReadDir(sd.UnitDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".pushdeploy-"+app+"-") {
			out = append(out, "left in the unit directory: "+e.Name())
		}
	}
	return out
}

// instanceProblems checks that each instance's process runs the current release's binary
// and that it answers its health check and the current release's VERSION.
func instanceProblems(sd *testenv.Systemd, dirs datadir.Layout, app, current string, port int) []string {
	var out []string
	version, err := os.ReadFile(filepath.Join(dirs.Release(app, current), "VERSION"))
	if err != nil {
		return []string{err.Error()}
	}
	client := http.Client{Timeout: 5 * time.Second}
	get := func(url string) (string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b)), err
	}
	for i := 1; i <= 2; i++ {
		unit := fmt.Sprintf("pushdeploy-%s-web@%d.service", app, i)
		pid, err := sd.Command("systemctl", "--user", "show", "-p", "MainPID", "--value", unit).Output()
		if err != nil {
			out = append(out, fmt.Sprintf("%s: systemctl show: %v", unit, err))
			continue
		}
		exe, err := os.Readlink("/proc/" + strings.TrimSpace(string(pid)) + "/exe")
		if want := filepath.Join(dirs.Release(app, current), "bin", "hello"); err != nil || exe != want {
			out = append(out, fmt.Sprintf("%s: runs %q (%v), want %s", unit, exe, err, want))
		}
		base := fmt.Sprintf("http://127.0.0.1:%d", port+i-1)
		if got, err := get(base + "/health"); err != nil || got != "ok" {
			out = append(out, fmt.Sprintf("%s: /health: %q, %v", unit, got, err))
		}
		if got, err := get(base + "/"); err != nil || got != "hello from version "+strings.TrimSpace(string(version)) {
			out = append(out, fmt.Sprintf("%s: /: %q, %v; want version %s", unit, got, err, strings.TrimSpace(string(version))))
		}
	}
	return out
}
