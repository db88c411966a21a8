package units

import "strconv"

// Instance is one instance of a service, as its unit runs it.
type Instance struct {
	Service *Service
	// N is the instance number, from 1.
	N    int
	Unit string
	// Port is the instance's PORT, Service.Port+N-1; 0 when the service sets none.
	Port int
}

// InstancesOf lists every instance of spec's services for app, service by service in name
// order and by number within a service: the order the units start in.
func InstancesOf(spec *Spec, app string) []Instance {
	var out []Instance
	for _, name := range sortedKeys(spec.Services) {
		s := spec.Services[name]
		for n := 1; n <= s.Instances; n++ {
			out = append(out, Instance{Service: s, N: n, Unit: UnitName(app, name, n), Port: s.InstancePort(n)})
		}
	}
	return out
}

// InstancePort is the PORT of instance n of s: Port+n-1, or 0 when s sets no port.
func (s *Service) InstancePort(n int) int {
	if s.Port <= 0 {
		return 0
	}
	return s.Port + n - 1
}

// InstanceEnv is the environment instance i's unit gives its program from service.json, as
// NAME=value in the order the unit applies it: the shared env, the service's own (which
// wins), ndm's process number expanded in an ndm file, then PORT.
func (spec *Spec) InstanceEnv(i Instance) []string {
	env := mergedEnv(spec, i.Service)
	out := make([]string, 0, len(env)+1)
	for _, k := range sortedKeys(env) {
		v := env[k]
		if indexed(spec, v) {
			v = expand(v, i.N)
		}
		out = append(out, k+"="+v)
	}
	if i.Port > 0 {
		out = append(out, "PORT="+strconv.Itoa(i.Port))
	}
	return out
}
