package rollout

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pushdeploy/pushdeploy/units"
)

// File is a unit file or drop-in, named relative to the unit directory.
type File = units.File

// clone is a copy of i that shares no slice with it.
func (i *Installed) clone() *Installed {
	return &Installed{Files: slices.Clone(i.Files), Instances: slices.Clone(i.Instances), Target: i.Target}
}

// check refuses an Installed whose names could reach outside the unit directory or are not
// pushdeploy's, so a corrupt record never makes Deploy or Remove touch other files.
func (i *Installed) check() error {
	var errs []error
	unitName := func(what, name string) {
		if !strings.HasPrefix(name, "pushdeploy-") || strings.ContainsAny(name, "/\\") || !filepath.IsLocal(name) {
			errs = append(errs, fmt.Errorf("%s %q is not a pushdeploy unit name", what, name))
		}
	}
	for _, f := range i.Files {
		unit, rest, dropIn := strings.Cut(f.Name, "/")
		switch {
		case !filepath.IsLocal(f.Name) || filepath.Clean(f.Name) != f.Name:
			errs = append(errs, fmt.Errorf("file %q is not a clean name inside the unit directory", f.Name))
		case dropIn && (!strings.HasSuffix(unit, ".d") || !strings.HasSuffix(rest, ".conf") || strings.Contains(rest, "/")):
			errs = append(errs, fmt.Errorf("file %q is neither a unit nor a drop-in", f.Name))
		default:
			unitName("file", unit)
		}
	}
	for _, u := range i.Instances {
		unitName("instance", u)
	}
	if i.Target != "" || len(i.Files) > 0 {
		unitName("target", i.Target)
		if !slices.Contains(names(i.Files), i.Target) {
			errs = append(errs, fmt.Errorf("target %s has no file", i.Target))
		}
	}
	return errors.Join(errs...)
}

// names lists the files' names.
func names(files []File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Name
	}
	return out
}

// dropped lists the names in old that files does not have.
func dropped(old, files []File) []string {
	keep := names(files)
	var out []string
	for _, f := range old {
		if !slices.Contains(keep, f.Name) {
			out = append(out, f.Name)
		}
	}
	return out
}

// union is everything that may be installed after a failed attempt to put prev back:
// prev's files and instances, then next's that prev did not have.
func union(prev, next *Installed) *Installed {
	u := prev.clone()
	for _, f := range next.Files {
		if !slices.Contains(names(u.Files), f.Name) {
			u.Files = append(u.Files, f)
		}
	}
	for _, unit := range next.Instances {
		if !slices.Contains(u.Instances, unit) {
			u.Instances = append(u.Instances, unit)
		}
	}
	if u.Target == "" {
		u.Target = next.Target
	}
	return u
}
