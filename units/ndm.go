package units

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// The ndm format, read as ndm 1.x read it (lib/service.js), so an ndm service.json works
// unchanged:
//   - top-level keys are services, except "env" and "args", which every service shares; a
//     service's env wins over the shared env, array args follow the shared array, object args
//     are merged over the shared object;
//   - a service runs `node [--max-old-space-size=N] <scripts.start without "node "> <args>`
//     in node_modules/<module> (module defaults to the service's key), or at the root when
//     package.json's name is the module, and package.json supplies scripts and description
//     when the service has none;
//   - "processes" instances; "%i" in args and env values is the 0-based process number;
//   - env and args values may be interview questions ({"default": …}): the default is used.
//
// Two things differ, on purpose: object args become "--key=value" words sorted by key
// (ndm passed "--key" "value" in file order, which reads the same to node's option
// parsers but depends on key order), and mixing an args array with an args object is an
// error, where ndm silently dropped one of them.

type ndmService struct {
	Description     string                     `json:"description"`
	Module          string                     `json:"module"`
	Scripts         map[string]json.RawMessage `json:"scripts"`
	Env             map[string]json.RawMessage `json:"env"`
	Args            json.RawMessage            `json:"args"`
	Processes       *int                       `json:"processes"`
	MaxOldSpaceSize json.RawMessage            `json:"maxOldSpaceSize"` // a number, or ndm's own fixture's "4096"
}

// packageJSON is what ndm took from the package.json beside service.json.
type packageJSON struct {
	Name        string                     `json:"name"`
	Description string                     `json:"description"`
	Scripts     map[string]json.RawMessage `json:"scripts"`
}

// ndmRename maps native field names to ndm's in error messages.
var ndmRename = map[string]string{"instances": "processes", "command": "scripts.start", "workdir": "module"}

var nodePrefix = regexp.MustCompile(`^node( +|$)`)

func parseNDM(top map[string]json.RawMessage, pkg *packageJSON, errs *problems) *Spec {
	spec := &Spec{Format: FormatNDM, Services: map[string]*Service{}}
	var shared map[string]json.RawMessage
	if raw, ok := top["env"]; ok && json.Unmarshal(raw, &shared) != nil {
		errs.add("env", "must be an object")
	}
	spec.Env = envMap("env", shared, &spec.Notes, errs)
	sharedArgs := ndmArgsOf("args", top["args"], &spec.Notes, errs)
	keys := map[string]string{} // service name -> the key it came from
	for _, key := range sortedKeys(top) {
		if key == "env" || key == "args" {
			continue
		}
		var raw ndmService
		if !decode(key, top[key], &raw, errs) {
			continue
		}
		module := raw.Module
		if module == "" {
			module = key
		}
		s := &Service{Name: ndmName(key), Description: raw.Description, Instances: DefaultInstances,
			WorkDir: "node_modules/" + module, StopTimeout: DefaultStopTimeout,
			Rollout: Rollout{MaxParallel: DefaultMaxParallel, AutoRevert: true},
			Relax:   []string{"MemoryDenyWriteExecute"}}
		if pkg != nil && pkg.Name == module {
			s.WorkDir = ""
			if s.Description == "" {
				s.Description = pkg.Description
			}
			if raw.Scripts == nil {
				raw.Scripts = pkg.Scripts
			}
		}
		if raw.Processes != nil {
			s.Instances = *raw.Processes
		}
		n := len(errs.list)
		start, ok := ndmStart(key+".scripts.start", raw.Scripts, errs)
		if !ok {
			if len(errs.list) == n {
				spec.Skipped = append(spec.Skipped, key)
			}
			continue
		}
		args := ndmArgsOf(key+".args", raw.Args, &spec.Notes, errs).merge(key+".args", sharedArgs, &spec.Notes, errs)
		checkWords(key+".args", args, errs)
		s.Env = envMap(key+".env", raw.Env, &spec.Notes, errs)
		if len(errs.list) == n {
			s.Command = []string{"node"}
			if mb := ndmMegabytes(key+".maxOldSpaceSize", raw.MaxOldSpaceSize, errs); mb > 0 {
				s.Command = append(s.Command, "--max-old-space-size="+strconv.Itoa(mb))
			}
			s.Command = append(append(s.Command, start...), args...)
		}
		validateService(key, s, ndmRename, errs)
		if prev, dup := keys[s.Name]; dup {
			errs.add(key, "becomes service %s, like %s", s.Name, prev)
		}
		keys[s.Name] = key
		spec.Services[s.Name] = s
	}
	return spec
}

// ndmName makes a unit-safe name of a service key the way ndm made file names of scoped
// packages ("@scope/name" became "@scope_name"), minus the "@" units cannot hold.
func ndmName(key string) string {
	return strings.ReplaceAll(strings.TrimPrefix(key, "@"), "/", "_")
}

// ndmStart reads scripts.start without ndm's leading "node", split into words; ok is false
// when there is none (ndm skipped such services) or it is invalid.
func ndmStart(path string, scripts map[string]json.RawMessage, errs *problems) ([]string, bool) {
	raw, ok := scripts["start"]
	if !ok {
		return nil, false
	}
	var start string
	if json.Unmarshal(raw, &start) != nil {
		errs.add(path, "must be a string")
		return nil, false
	}
	words, err := splitWords(nodePrefix.ReplaceAllString(strings.TrimSpace(start), ""))
	if err != nil {
		errs.add(path, "%v", err)
		return nil, false
	}
	if len(words) == 0 {
		errs.add(path, "names no script, got %q", start)
		return nil, false
	}
	checkWords(path, words, errs)
	return words, true
}

// ndmArgs is an args value: an array (list) or an object (obj), or neither when absent.
type ndmArgs struct {
	list []string
	obj  map[string]string
}

func ndmArgsOf(path string, raw json.RawMessage, notes *[]string, errs *problems) ndmArgs {
	var a ndmArgs
	if len(raw) == 0 || string(raw) == "null" {
		return a
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		a.list = []string{}
		for i, v := range list {
			s, ok := scalar(v, true)
			if !ok {
				errs.add(path+"["+strconv.Itoa(i)+"]", "must be a string, number or boolean")
			}
			a.list = append(a.list, s)
		}
		return a
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		errs.add(path, "must be an array or an object")
		return a
	}
	a.obj = envMap(path, obj, notes, errs)
	return a
}

// merge combines a service's args with the shared ones, as ndm did, and flattens them.
func (own ndmArgs) merge(path string, shared ndmArgs, notes *[]string, errs *problems) []string {
	switch {
	case own.obj != nil && len(shared.list) > 0:
		errs.add(path, "cannot combine an array with an object: the shared args and this service's must be the same kind")
		return nil
	case own.list != nil && len(shared.obj) > 0:
		// ndm used a service's array as it was, without the shared object.
		*notes = append(*notes, path+": an array, so the shared args (an object) do not apply, as with ndm")
		return own.list
	case own.list != nil:
		return append(append([]string{}, shared.list...), own.list...)
	case own.obj == nil && shared.list != nil:
		return shared.list
	}
	obj := map[string]string{}
	for k, v := range shared.obj {
		obj[k] = v
	}
	for k, v := range own.obj {
		obj[k] = v
	}
	var words []string
	for _, k := range sortedKeys(obj) {
		words = append(words, k+"="+obj[k])
	}
	return words
}

// ndmMegabytes reads maxOldSpaceSize: ndm passed it to node as it was, so a whole number or
// a string of digits ("4096", as ndm's own fixture writes it) both mean megabytes. Absent is
// 0, which adds no flag.
func ndmMegabytes(field string, raw json.RawMessage, errs *problems) int {
	if len(raw) == 0 || string(raw) == "null" {
		return 0
	}
	var text string
	if json.Unmarshal(raw, &text) != nil {
		text = string(raw)
	}
	n, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil || n < 0 {
		errs.add(field, "must be a whole number of megabytes (a number or a string of digits), got %s", raw)
		return 0
	}
	return n
}
