package units

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// The native format as it is written. These types only decode: every value is converted and
// checked into a Service, so a default or a rule lives in one place. Their JSON names are the
// format's fields; schema_test.go holds them and service.schema.json to the same list.
type nativeFile struct {
	Schema   string                     `json:"$schema"`
	Env      map[string]json.RawMessage `json:"env"`
	Services map[string]json.RawMessage `json:"services"`
}

type nativeService struct {
	Command     json.RawMessage            `json:"command"`
	Description string                     `json:"description"`
	WorkDir     string                     `json:"workdir"`
	Instances   *int                       `json:"instances"`
	Port        int                        `json:"port"`
	Env         map[string]json.RawMessage `json:"env"`
	Health      *nativeHealth              `json:"health"`
	Rollout     *nativeRollout             `json:"rollout"`
	User        string                     `json:"user"`
	StopTimeout string                     `json:"stop_timeout"`
	MemoryMax   string                     `json:"memory_max"`
	CPUWeight   int                        `json:"cpu_weight"`
	TasksMax    int                        `json:"tasks_max"`
	StateDirs   []string                   `json:"state_dirs"`
	Notify      bool                       `json:"notify"`
	Relax       []string                   `json:"relax"`
}

type nativeHealth struct {
	HTTP            string          `json:"http"`
	TCP             bool            `json:"tcp"`
	Command         json.RawMessage `json:"command"`
	Timeout         string          `json:"timeout"`
	Interval        string          `json:"interval"`
	MinHealthyTime  string          `json:"min_healthy_time"`
	HealthyDeadline string          `json:"healthy_deadline"`
}

type nativeRollout struct {
	MaxParallel json.RawMessage `json:"max_parallel"`
	Canary      int             `json:"canary"`
	AutoRevert  *bool           `json:"auto_revert"`
}

func parseNative(data []byte, errs *problems) *Spec {
	var f nativeFile
	if !decode("", data, &f, errs) {
		return nil
	}
	spec := &Spec{Format: FormatNative, Env: envMap("env", f.Env, nil, errs), Services: map[string]*Service{}}
	for _, name := range sortedKeys(f.Services) {
		path := "services." + name
		var raw nativeService
		if !decode(path, f.Services[name], &raw, errs) {
			continue
		}
		s := &Service{
			Name:        name,
			Command:     command(path+".command", raw.Command, errs),
			Description: raw.Description,
			WorkDir:     raw.WorkDir,
			Instances:   DefaultInstances,
			Port:        raw.Port,
			Env:         envMap(path+".env", raw.Env, nil, errs),
			Rollout:     Rollout{MaxParallel: DefaultMaxParallel, AutoRevert: true},
			User:        raw.User,
			StopTimeout: duration(path+".stop_timeout", raw.StopTimeout, DefaultStopTimeout, errs),
			MemoryMax:   raw.MemoryMax,
			CPUWeight:   raw.CPUWeight,
			TasksMax:    raw.TasksMax,
			StateDirs:   raw.StateDirs,
			Notify:      raw.Notify,
			Relax:       raw.Relax,
		}
		if raw.Instances != nil {
			s.Instances = *raw.Instances
		}
		if h := raw.Health; h != nil {
			hp := path + ".health"
			s.Health = &Health{
				HTTP:            h.HTTP,
				TCP:             h.TCP,
				Timeout:         duration(hp+".timeout", h.Timeout, DefaultHealthTimeout, errs),
				Interval:        duration(hp+".interval", h.Interval, DefaultHealthInterval, errs),
				MinHealthyTime:  duration(hp+".min_healthy_time", h.MinHealthyTime, DefaultMinHealthyTime, errs),
				HealthyDeadline: duration(hp+".healthy_deadline", h.HealthyDeadline, DefaultHealthDeadline, errs),
			}
			if len(h.Command) > 0 && string(h.Command) != "null" {
				s.Health.Command = command(hp+".command", h.Command, errs)
			}
		}
		if r := raw.Rollout; r != nil {
			s.Rollout.Canary = r.Canary
			if r.AutoRevert != nil {
				s.Rollout.AutoRevert = *r.AutoRevert
			}
			if len(r.MaxParallel) > 0 && string(r.MaxParallel) != "null" {
				s.Rollout.MaxParallel = maxParallel(path+".rollout.max_parallel", r.MaxParallel, errs)
			}
		}
		validateService(path, s, nil, errs)
		spec.Services[name] = s
	}
	return spec
}

// command reads an argv: an array of strings as is, or a string split into words with shell
// rules. Nothing is expanded and no shell runs it, so a string that only works through a
// shell (pipes, redirections, substitutions) is an error rather than a surprise at start.
func command(path string, raw json.RawMessage, errs *problems) []string {
	if len(raw) == 0 || string(raw) == "null" {
		errs.add(path, "missing")
		return nil
	}
	var argv []string
	var s string
	if json.Unmarshal(raw, &s) == nil {
		words, err := splitWords(s)
		if err != nil {
			errs.add(path, "%v", err)
			return nil
		}
		argv = words
	} else if json.Unmarshal(raw, &argv) != nil {
		errs.add(path, "must be a string or an array of strings")
		return nil
	}
	if len(argv) == 0 {
		errs.add(path, "must not be empty")
	}
	return argv
}

// duration reads a Go duration such as "30s" or "1m30s"; "" gives the default.
func duration(path, s string, def time.Duration, errs *problems) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		errs.add(path, "must be a duration such as \"30s\" or \"1m30s\", got %q", s)
		return def
	}
	if d <= 0 {
		errs.add(path, "must be positive, got %q", s)
		return def
	}
	return d
}

// maxParallel reads a count (a number or a numeric string) or a percentage string.
func maxParallel(path string, raw json.RawMessage, errs *problems) string {
	var n int
	if json.Unmarshal(raw, &n) == nil {
		if n < 1 {
			errs.add(path, "must be at least 1, got %d", n)
		}
		return strconv.Itoa(n)
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		errs.add(path, "must be a count or a percentage such as \"25%%\"")
		return DefaultMaxParallel
	}
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		if f, err := strconv.ParseFloat(pct, 64); err != nil || f <= 0 || f > 100 {
			errs.add(path, "must be a percentage in (0, 100], got %q", s)
		}
		return s
	}
	if n, err := strconv.Atoi(s); err != nil || n < 1 {
		errs.add(path, "must be a count of at least 1 or a percentage such as \"25%%\", got %q", s)
	}
	return s
}

// envMap reads env values: strings, and numbers and booleans written as in the JSON (ndm
// files often say "PORT": 8080). With interview set (an ndm file), ndm's interview
// questions ({"default": …, "description": …}) give their default, as `ndm generate` did,
// and one without a default is left out with a note in *interview.
func envMap(path string, raw map[string]json.RawMessage, interview *[]string, errs *problems) map[string]string {
	env := make(map[string]string, len(raw))
	for _, k := range sortedKeys(raw) {
		v, ok := scalar(raw[k], interview != nil)
		if !ok && interview != nil && unanswered(raw[k]) {
			// ndm asked at install time; with no answer and no default the variable stays
			// unset, as ndm left it.
			*interview = append(*interview, join(path, k)+": an interview question without a default: left unset")
			continue
		}
		if !ok {
			what := "a string, number or boolean"
			if interview != nil {
				what += ", or an interview question"
			}
			errs.add(join(path, k), "must be %s", what)
			continue
		}
		env[k] = v
	}
	return env
}

// unanswered reports whether raw is an ndm interview question without a default: an
// object whose keys are among "description" and "default" (and has no default).
func unanswered(raw json.RawMessage) bool {
	var q map[string]json.RawMessage
	if json.Unmarshal(raw, &q) != nil {
		return false
	}
	_, hasDefault := q["default"]
	_, hasDescription := q["description"]
	return !hasDefault && hasDescription && len(q) == 1
}

// scalar renders a JSON string, number or boolean as the text a process would see.
func scalar(raw json.RawMessage, interview bool) (string, bool) {
	var v any
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	case map[string]any:
		if def, ok := v["default"]; ok && interview {
			b, _ := json.Marshal(def)
			return scalar(b, false)
		}
	}
	return "", false
}
