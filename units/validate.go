package units

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kballard/go-shellquote"
)

var (
	// nameRE is what an app or service name may be: it becomes part of unit names, which
	// allow little, and never an "@" (the instance separator) or a "." (the type suffix).
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	// envKeyRE is systemd's rule for variable names.
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// userRE is systemd's portable user name rule, or a numeric uid.
	userRE      = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_-]{0,30}|[0-9]{1,10})$`)
	memoryRE    = regexp.MustCompile(`^([1-9][0-9]*(\.[0-9]+)?[KMGT]?|[1-9][0-9]?(\.[0-9]+)?%|100%|infinity)$`)
	stateDirRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)
	shellSyntax = map[string]bool{"|": true, "||": true, "&": true, "&&": true, ";": true, ";;": true,
		">": true, ">>": true, "<": true, "<<": true, "2>&1": true, "&>": true, "2>": true}
)

// reservedEnv are the variables Generate sets itself.
const reservedEnvPrefix = "PUSHDEPLOY_"

// checkShared checks the shared env, alone and against each service.
func checkShared(spec *Spec, errs *problems) {
	env("env", spec.Env, errs)
	if _, ok := spec.Env["PORT"]; ok {
		for _, name := range sortedKeys(spec.Services) {
			if spec.Services[name] != nil && spec.Services[name].Port != 0 {
				errs.add("env.PORT", "is set from services.%s.port; set one of them", name)
			}
		}
	}
}

// validateService checks the rules both formats share. rename maps a native field name to
// the one the file used (ndm's "processes" for "instances"), so errors point at the file.
func validateService(path string, s *Service, rename map[string]string, errs *problems) {
	f := func(name string) string {
		if r, ok := rename[name]; ok {
			name = r
		}
		return join(path, name)
	}
	if !nameRE.MatchString(s.Name) {
		errs.add(path, "service name must be 1-64 letters, digits, '-' or '_', starting with a letter or digit")
	}
	if len(s.Command) > 0 { // command reported a missing or empty one
		argv(f("command"), s.Command, s.WorkDir, errs)
	}
	if err := text(s.Description); err != nil {
		errs.add(f("description"), "%v", err)
	} else if strings.HasSuffix(strings.TrimSpace(s.Description), `\`) {
		errs.add(f("description"), "must not end with a backslash, which continues a unit file line")
	}
	if s.WorkDir != "" && (!filepath.IsLocal(s.WorkDir) || !safePath(s.WorkDir) || text(s.WorkDir) != nil ||
		strings.TrimSpace(s.WorkDir) != s.WorkDir) {
		errs.add(f("workdir"), "must be a relative path inside the release without quotes, backslashes or $, got %q", s.WorkDir)
	}
	if s.Instances < 1 || s.Instances > MaxInstances {
		errs.add(f("instances"), "must be 1..%d, got %d", MaxInstances, s.Instances)
	}
	if s.Port != 0 && (s.Port < MinPort || s.Port > 65535) {
		errs.add(f("port"), "must be %d..65535 (the units grant no capability to bind lower ports), got %d", MinPort, s.Port)
	} else if s.Port != 0 && s.Port+s.Instances-1 > 65535 {
		errs.add(f("port"), "%d instances from port %d go past 65535", s.Instances, s.Port)
	}
	env(f("env"), s.Env, errs)
	if _, ok := s.Env["PORT"]; ok && s.Port != 0 {
		errs.add(f("env")+".PORT", "is set from port; set one of them")
	}
	if s.Health != nil {
		health(f("health"), s, errs)
	}
	rollout(f("rollout"), s, errs)
	if s.User != "" && !userRE.MatchString(s.User) {
		errs.add(f("user"), "must be a user name or uid, got %q", s.User)
	} else if s.User == "root" || s.User == "0" {
		errs.add(f("user"), "must not be root; leave it out for a dynamic user")
	}
	if s.StopTimeout > maxTimeout {
		errs.add(f("stop_timeout"), "must be at most %v, got %v", maxTimeout, s.StopTimeout)
	}
	if s.MemoryMax != "" && !memoryRE.MatchString(s.MemoryMax) {
		errs.add(f("memory_max"), "must be bytes with an optional K, M, G or T suffix, a percentage, or infinity, got %q", s.MemoryMax)
	}
	if s.CPUWeight < 0 || s.CPUWeight > 10000 {
		errs.add(f("cpu_weight"), "must be 1..10000, got %d", s.CPUWeight)
	}
	if s.TasksMax < 0 {
		errs.add(f("tasks_max"), "must be positive, got %d", s.TasksMax)
	}
	seen := map[string]bool{}
	for i, d := range s.StateDirs {
		p := fmt.Sprintf("%s[%d]", f("state_dirs"), i)
		if !stateDirRE.MatchString(d) {
			errs.add(p, "must be a relative path of letters, digits, '.', '-' and '_', got %q", d)
		} else if seen[d] {
			errs.add(p, "%q is listed twice", d)
		}
		seen[d] = true
	}
	relax(f("relax"), s, errs)
}

// maxTimeout bounds stop_timeout: a stop that may take longer than a day is a typo.
const maxTimeout = 24 * time.Hour

// argv checks every word for what a unit file cannot hold, and the program for what systemd
// refuses in an executable path.
func argv(path string, words []string, workdir string, errs *problems) {
	if len(words) == 0 {
		errs.add(path, "must not be empty")
		return
	}
	checkWords(path, words, errs)
	if text(words[0]) != nil {
		return
	}
	p := words[0]
	switch {
	case p == "" || p == "." || p == "..":
		errs.add(path+"[0]", "program must be a path or a name, got %q", p)
	case !safePath(p):
		errs.add(path+"[0]", "program must not contain quotes, backslashes or $ (systemd refuses them in an executable path), got %q", p)
	case filepath.IsAbs(p):
		if filepath.Clean(p) != p || strings.HasSuffix(p, "/") {
			errs.add(path+"[0]", "program must be a clean path, got %q", p)
		}
	case strings.Contains(p, "/"):
		if !filepath.IsLocal(filepath.Join(workdir, p)) || strings.HasSuffix(p, "/") {
			errs.add(path+"[0]", "relative program %q must stay inside the release", p)
		}
	case strings.ContainsAny(p[:1], "-@+!:"):
		errs.add(path+"[0]", "program name must not start with %q (a systemd ExecStart prefix)", p[:1])
	}
}

// checkWords reports the words a unit file cannot carry.
func checkWords(path string, words []string, errs *problems) {
	for i, w := range words {
		if err := text(w); err != nil {
			errs.add(fmt.Sprintf("%s[%d]", path, i), "%v", err)
		}
	}
}

// splitWords splits a command string with shell rules, and refuses shell syntax that would
// only work through a shell.
func splitWords(s string) ([]string, error) {
	words, err := shellquote.Split(s)
	switch err {
	case nil:
	case shellquote.UnterminatedSingleQuoteError:
		return nil, fmt.Errorf("unterminated single quote in %q", s)
	case shellquote.UnterminatedDoubleQuoteError:
		return nil, fmt.Errorf("unterminated double quote in %q", s)
	case shellquote.UnterminatedEscapeError:
		return nil, fmt.Errorf("trailing backslash in %q", s)
	default:
		return nil, fmt.Errorf("split %q into words: %w", s, err)
	}
	for _, w := range words {
		if shellSyntax[w] || strings.Contains(w, "$(") || strings.Contains(w, "`") {
			return nil, fmt.Errorf("%q is shell syntax, but commands never run through a shell: write the argv as an array, "+
				"or run a shell explicitly: [\"/bin/sh\", \"-c\", \"…\"]", w)
		}
	}
	return words, nil
}

// env checks names and values.
func env(path string, m map[string]string, errs *problems) {
	for _, k := range sortedKeys(m) {
		switch {
		case !envKeyRE.MatchString(k):
			errs.add(join(path, k), "not a valid variable name (letters, digits and '_', not starting with a digit)")
		case strings.HasPrefix(k, reservedEnvPrefix):
			errs.add(join(path, k), "%s* variables are set by pushdeploy", reservedEnvPrefix)
		}
		if err := text(m[k]); err != nil {
			errs.add(join(path, k), "%v", err)
		}
	}
}

func health(path string, s *Service, errs *problems) {
	h := s.Health
	n := 0
	for _, set := range []bool{h.HTTP != "", h.TCP, h.Command != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		errs.add(path, "must have exactly one of http, tcp and command, got %d", n)
	}
	if h.HTTP != "" && (!strings.HasPrefix(h.HTTP, "/") || strings.ContainsFunc(h.HTTP, unicode.IsSpace) || text(h.HTTP) != nil) {
		errs.add(path+".http", "must be a URL path such as \"/healthz\", got %q", h.HTTP)
	}
	if (h.HTTP != "" || h.TCP) && s.Port == 0 {
		errs.add(path, "an http or tcp check needs the service's port")
	}
	if len(h.Command) > 0 {
		argv(path+".command", h.Command, s.WorkDir, errs)
	}
	if h.MinHealthyTime >= h.HealthyDeadline {
		errs.add(path+".min_healthy_time", "must be shorter than healthy_deadline (%v), got %v", h.HealthyDeadline, h.MinHealthyTime)
	}
	if h.Timeout > h.HealthyDeadline {
		errs.add(path+".timeout", "must not be longer than healthy_deadline (%v), got %v", h.HealthyDeadline, h.Timeout)
	}
}

func rollout(path string, s *Service, errs *problems) {
	if c := s.Rollout.Canary; c < 0 || c > s.Instances {
		errs.add(path+".canary", "must be 0..%d (the instances), got %d", s.Instances, c)
	}
}

// text refuses what no unit file line can carry: control characters (newline, tab, NUL, …)
// and invalid UTF-8. systemd could decode some of them from C escapes, but they make units
// and logs unreadable and they are never needed in an argument or a variable.
func text(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("must be valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("must not contain control characters such as newline, tab or NUL (found %s at byte %d)",
				strconv.QuoteRune(r), i)
		}
	}
	return nil
}

// safePath reports whether systemd accepts p in an executable path: no quotes, no backslashes
// (string_is_safe), and no $, which systemd would expand in argv[0] but not in the path.
func safePath(p string) bool {
	return !strings.ContainsAny(p, "\"'\\$")
}
