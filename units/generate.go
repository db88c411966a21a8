package units

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Options are what Generate needs besides the Spec: where the release is and which manager
// will run the units.
type Options struct {
	App string
	// SHA is the release's commit, shown in descriptions and given to the service as
	// PUSHDEPLOY_SHA; "" when rendering a work tree.
	SHA string
	// ReleaseDir is the absolute release directory (…/releases/<sha>): units run it and never
	// the current symlink. It must not be under /tmp or /var/tmp, which PrivateTmp= hides.
	ReleaseDir string
	// User renders for a user manager: it cannot switch users and refuses some namespaces,
	// so those directives become comments saying why.
	User bool
	// EnvFiles are absolute paths added as EnvironmentFile= (for example configuration the
	// agent renders); each must exist when an instance starts, so a missing file fails the
	// start instead of running with half a configuration. Their variables override env.
	EnvFiles []string
}

// File is one generated unit file or drop-in. Name is relative to the unit directory: an
// instance drop-in is "pushdeploy-<app>-<service>@<n>.service.d/instance.conf".
type File struct {
	Name    string
	Content string
}

var shaRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// Generate renders the units of every service in spec: a template unit per service, a
// drop-in per instance for what differs between instances (PORT, ndm's %i), a check unit
// template (and its drop-ins) per service whose health check is a command (see
// CheckUnitName), and the app target that wants every instance. Files are sorted by name and the output depends only on
// the arguments.
//
// It fails when opts are invalid or a value cannot be expressed in a unit; a Spec from Parse
// or Load has been checked already, so that means an invalid Options or a hand-built Spec.
func Generate(spec *Spec, opts Options) ([]File, error) {
	if err := checkOptions(spec, opts); err != nil {
		return nil, fmt.Errorf("generate units for %s: %w", opts.App, err)
	}
	var files []File
	var instances []string
	for _, name := range sortedKeys(spec.Services) {
		s := spec.Services[name]
		files = append(files, File{Name: UnitName(opts.App, name, 0), Content: template(spec, s, opts)})
		for i := 1; i <= s.Instances; i++ {
			instances = append(instances, UnitName(opts.App, name, i))
			if c := dropIn(spec, s, opts, i, false); c != "" {
				files = append(files, File{Name: UnitName(opts.App, name, i) + ".d/instance.conf", Content: c})
			}
		}
		if !HasCheckUnit(s) {
			continue
		}
		files = append(files, File{Name: CheckUnitName(opts.App, name, 0), Content: checkTemplate(spec, s, opts)})
		for i := 1; i <= s.Instances; i++ {
			if c := dropIn(spec, s, opts, i, true); c != "" {
				files = append(files, File{Name: CheckUnitName(opts.App, name, i) + ".d/instance.conf", Content: c})
			}
		}
	}
	files = append(files, File{Name: TargetName(opts.App), Content: target(opts, instances)})
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// checkOptions validates opts, and the Spec again, since a Spec can be built by hand.
func checkOptions(spec *Spec, opts Options) error {
	errs := &problems{}
	if !nameRE.MatchString(opts.App) {
		errs.add("app", "must be 1-64 letters, digits, '-' or '_', starting with a letter or digit, got %q", opts.App)
	}
	if opts.SHA != "" && !shaRE.MatchString(opts.SHA) {
		errs.add("sha", "must be a full lowercase hex commit id, got %q", opts.SHA)
	}
	if err := absPath(opts.ReleaseDir); err != nil {
		errs.add("release dir", "%v", err)
	}
	for i, f := range opts.EnvFiles {
		if err := absPath(f); err != nil {
			errs.add(fmt.Sprintf("env file %d", i+1), "%v", err)
		}
	}
	if spec == nil || len(spec.Services) == 0 {
		errs.add("services", "no service to run")
		return errs.err()
	}
	checkShared(spec, errs)
	for _, name := range sortedKeys(spec.Services) {
		s := spec.Services[name]
		if s == nil || s.Name != name {
			errs.add("services."+name, "has no Service, or one with another name")
			continue
		}
		validateService("services."+name, s, nil, errs)
		if len(s.Command) == 0 {
			errs.add("services."+name+".command", "missing")
		}
		if hidden(opts.ReleaseDir) && !slices.Contains(s.Relax, "PrivateTmp") {
			errs.add("release dir", "%s is under /tmp or /var/tmp, which PrivateTmp= hides from service %s: keep releases elsewhere", opts.ReleaseDir, name)
		}
	}
	return errs.err()
}

// absPath accepts the absolute, clean paths a unit can name whole.
func absPath(p string) error {
	switch {
	case !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/":
		return fmt.Errorf("must be an absolute, clean path, got %q", p)
	case text(p) != nil || !safePath(p) || strings.TrimSpace(p) != p:
		return fmt.Errorf("must not contain control characters, quotes, backslashes, $ or trailing spaces, got %q", p)
	}
	return nil
}

func hidden(dir string) bool {
	for _, tmp := range []string{"/tmp", "/var/tmp"} {
		if dir == tmp || strings.HasPrefix(dir, tmp+"/") {
			return true
		}
	}
	return false
}

// UnitName is the unit of one instance of a service; instance 0 names the template.
func UnitName(app, service string, instance int) string {
	n := ""
	if instance > 0 {
		n = strconv.Itoa(instance)
	}
	return "pushdeploy-" + app + "-" + service + "@" + n + ".service"
}

// TargetName is the app's target: enabling it starts every instance at boot, and stopping it
// stops them all (PartOf=).
func TargetName(app string) string { return "pushdeploy-" + app + ".target" }

// Instances lists every instance unit of spec, by service and then by number, as the
// installer starts, restarts and compares them.
func Instances(spec *Spec, app string) []string {
	var names []string
	for _, i := range InstancesOf(spec, app) {
		names = append(names, i.Unit)
	}
	return names
}

// release names the release for descriptions: the short SHA, or the directory.
func release(opts Options) string {
	if opts.SHA != "" {
		return opts.SHA[:12]
	}
	return opts.ReleaseDir
}

func header(u *unitText, what string, opts Options) {
	u.comment("%s", what)
	if opts.SHA != "" {
		u.comment("Release %s in %s.", opts.SHA, opts.ReleaseDir)
	} else {
		u.comment("Release in %s.", opts.ReleaseDir)
	}
	u.comment("Generated by pushdeploy from service.json: the next deploy replaces this file.")
}

func target(opts Options, instances []string) string {
	u := &unitText{}
	header(u, fmt.Sprintf("The instances of app %s.", opts.App), opts)
	u.section("Unit")
	u.set("Description", specifiers(fmt.Sprintf("pushdeploy app %s (release %s)", opts.App, release(opts))))
	// Wants= in the target, not WantedBy= symlinks made per instance: an instance a release
	// drops leaves nothing behind that could start it again.
	for _, inst := range instances {
		u.set("Wants", inst)
	}
	u.section("Install")
	if opts.User {
		u.set("WantedBy", "default.target")
	} else {
		u.set("WantedBy", "multi-user.target")
	}
	return u.String()
}
