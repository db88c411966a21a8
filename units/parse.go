package units

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// FileName is the name of the file Load reads at the root of a release.
const FileName = "service.json"

// ErrNoServiceFile is returned by Load when the release has no service.json, so the agent can
// tell "this app runs no services" from a broken file.
var ErrNoServiceFile = errors.New("no " + FileName)

// Load reads service.json at the root of releaseDir. Both pushdeploy's format and ndm's are
// accepted. For ndm, package.json beside it is read too, as ndm did: it supplies a service's
// start script and description when service.json leaves them out, and decides whether a
// service runs at the root or in node_modules/<module>.
//
// Both files are read without following a symlink and without blocking (readReleaseFile): a
// release is what anyone who can push wrote, and the agent reads it with its own rights.
//
// Outcomes: a valid Spec; an error wrapping ErrNoServiceFile; an error wrapping
// ErrNotRegular naming the file that is a symlink, FIFO, device or other non-regular file,
// or one larger than MaxFileSize; or an error listing every problem found, each naming its
// field.
func Load(releaseDir string) (*Spec, error) {
	path := filepath.Join(releaseDir, FileName)
	dirfd, err := unix.Open(releaseDir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("load %s: open release: %w", path, &os.PathError{Op: "open", Path: releaseDir, Err: err})
	}
	defer unix.Close(dirfd)
	data, err := readReleaseFile(dirfd, FileName)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load %s: %w", path, ErrNoServiceFile)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", releaseDir, err)
	}
	var pkg *packageJSON
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) == nil && top != nil && !isNative(top) {
		raw, err := readReleaseFile(dirfd, "package.json")
		switch {
		case err == nil:
			pkg = &packageJSON{}
			if json.Unmarshal(raw, pkg) != nil {
				pkg = nil // ndm ignored what it could not use
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("load %s: %w", releaseDir, err)
		}
	}
	spec, err := parse(data, pkg)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return spec, nil
}

// Parse reads a service.json from memory, in either format. It cannot see package.json, so an
// ndm service always runs in node_modules/<module> and needs its own scripts.start; Load
// applies ndm's package.json rules.
func Parse(data []byte) (*Spec, error) {
	return parse(data, nil)
}

func parse(data []byte, pkg *packageJSON) (*Spec, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, jsonError(data, err)
	}
	if top == nil {
		return nil, errors.New("must be a JSON object")
	}
	errs := &problems{}
	var spec *Spec
	if isNative(top) {
		spec = parseNative(data, errs)
	} else {
		spec = parseNDM(top, pkg, errs)
	}
	if spec != nil {
		checkShared(spec, errs)
	}
	if spec != nil && len(spec.Services) == 0 && errs.empty() {
		errs.add("services", "no service to run")
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return spec, nil
}

// isNative tells the formats apart: only the native format has a "services" object, and only
// ndm has shared "args". An ndm service literally named "services" is not supported.
func isNative(top map[string]json.RawMessage) bool {
	_, services := top["services"]
	_, args := top["args"]
	return services && !args
}

// jsonError turns a decoding error into one that says where in the file it is.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line := 1 + bytes.Count(data[:syn.Offset], []byte("\n"))
		return fmt.Errorf("invalid JSON at line %d: %v", line, err)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return errors.New("must be a JSON object")
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// problems collects every validation error, each as "path: message", so one run of the
// parser reports everything wrong with a file.
type problems struct{ list []error }

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (p *problems) empty() bool { return len(p.list) == 0 }

func (p *problems) err() error { return errors.Join(p.list...) }

// decode unmarshals raw into dst after checking that every key in it, at every depth, is a
// field of dst, so a typo is an error naming its path instead of a silently ignored key.
// It reports false when anything was wrong.
func decode(path string, raw json.RawMessage, dst any, errs *problems) bool {
	n := len(errs.list)
	checkKeys(path, raw, reflect.TypeOf(dst), errs)
	if len(errs.list) > n {
		return false
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			errs.add(join(path, typ.Field), "must be %s, got %s", kind(typ.Type), typ.Value)
		} else {
			errs.add(path, "%v", err)
		}
		return false
	}
	return true
}

// checkKeys walks raw beside type t and reports keys t has no field for.
func checkKeys(path string, raw json.RawMessage, t reflect.Type, errs *problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return // not an object: Unmarshal reports the type
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(obj) {
			f, ok := fields[k]
			if !ok {
				errs.add(join(path, k), "unknown field (known: %s)", strings.Join(sortedKeys(fields), ", "))
				continue
			}
			checkKeys(join(path, k), obj[k], f.Type, errs)
		}
	case reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) == nil {
			for _, k := range sortedKeys(obj) {
				checkKeys(join(path, k), obj[k], t.Elem(), errs)
			}
		}
	}
}

// join appends a key to a dotted field path; the root has the empty path.
func join(path, key string) string {
	switch {
	case path == "":
		return key
	case key == "":
		return path
	}
	return path + "." + key
}

// jsonFields maps a struct's JSON names to its fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = f
		}
	}
	return m
}

// kind names a Go type the way a service.json author thinks of it.
func kind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a whole number"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
