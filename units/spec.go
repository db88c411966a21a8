package units

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Format says which dialect a service.json was written in. It matters after parsing only for
// ndm's `%i` placeholder, which stands for the process number in arguments and env values.
type Format string

const (
	// FormatNative is pushdeploy's own format: a "services" object, documented by
	// service.schema.json.
	FormatNative Format = "pushdeploy"
	// FormatNDM is npm's ndm format: services as top-level keys beside shared "env" and
	// "args". In it, `%i` in a Command word or an env value is the 0-based process number, as
	// ndm substituted it in args and env, so "PORT": "500%i" still gives 5000, 5001, … for
	// instances 1, 2, …. (ndm left a %i in scripts.start alone; nobody wrote one there.)
	FormatNDM Format = "ndm"
)

// Defaults applied by Parse to fields a service.json leaves out. They are exported so the
// README, the schema and the code that consumes a Spec can quote the same numbers.
const (
	DefaultInstances      = 1
	MaxInstances          = 64
	DefaultStopTimeout    = 30 * time.Second
	DefaultMaxParallel    = "1"
	DefaultHealthTimeout  = 2 * time.Second
	DefaultHealthInterval = 1 * time.Second
	DefaultMinHealthyTime = 3 * time.Second
	DefaultHealthDeadline = 60 * time.Second
	// MinPort is the lowest base port: the hardened units grant no capability, so an
	// unprivileged service cannot bind below 1024.
	MinPort = 1024
)

// Spec is a parsed and validated service.json, with every default applied, so the code that
// consumes it never has to guess what an absent field meant.
type Spec struct {
	Format Format
	// Env is shared by every service; a service's own Env wins over it.
	Env map[string]string
	// Services by name; the name is part of the unit names.
	Services map[string]*Service
	// Skipped lists ndm services that have no start script, which ndm skipped as well (they
	// only carried scripts for `ndm run-script`). They get no unit; render shows them.
	Skipped []string
	// Notes say what an ndm file holds that is left out, as ndm left it out: an interview
	// question nobody answered (no default), shared args of another kind than a service's.
	// `pushdeploy units render` prints them.
	Notes []string
}

// Service is one program run as Instances identical processes, each its own systemd unit
// instance.
type Service struct {
	Name string
	// Command is the argv, never run through a shell. A program path containing a slash is
	// resolved inside the release (from WorkDir); a bare name is looked up by systemd in its
	// fixed search path (/usr/local/bin, /usr/bin, …).
	Command []string
	// WorkDir is the working directory relative to the release root; "" is the root.
	WorkDir     string
	Description string
	Instances   int
	// Port is the base port: instance n gets PORT=Port+n-1. Zero means no PORT is set.
	Port   int
	Env    map[string]string
	Health *Health // nil: no health check, an active unit counts as healthy
	// Rollout is how the rollout engine replaces the service's instances.
	Rollout Rollout
	// User runs the service as an existing user; "" means a dynamic user allocated by systemd
	// for the service's lifetime, which owns nothing else on the host.
	User        string
	StopTimeout time.Duration
	// MemoryMax is in systemd's syntax ("512M", "2G", "50%"); "" leaves it unlimited.
	MemoryMax string
	CPUWeight int // 1..10000, 0 leaves systemd's default
	TasksMax  int // 0 leaves systemd's default
	// StateDirs are writable directories that outlive releases (StateDirectory=); the
	// service finds them through $STATE_DIRECTORY.
	StateDirs []string
	// Notify means the service sends READY=1 with sd_notify, so a start completes only once
	// it is ready.
	Notify bool
	// Relax names protections this service drops; each is written into the unit as a
	// comment where the directive would be, so `systemctl cat` shows what was given up.
	Relax []string
}

// Health says how a rollout decides an instance is healthy (the agent turns it into a
// health.Spec; see package rollout). Exactly one of
// HTTP, TCP and Command is set.
type Health struct {
	HTTP    string   // a path such as "/healthz", fetched from 127.0.0.1:PORT; 2xx is healthy
	TCP     bool     // a connection to 127.0.0.1:PORT is accepted
	Command []string // exits 0, run in the release like the service's command
	// Timeout bounds one check, Interval separates checks; an instance must stay healthy for
	// MinHealthyTime, and become so within HealthyDeadline of its start.
	Timeout, Interval, MinHealthyTime, HealthyDeadline time.Duration
}

// Rollout is how a deploy replaces a service's instances.
type Rollout struct {
	// MaxParallel is how many instances restart at once: a count ("2") or a percentage of
	// the instances ("25%"); see Parallel.
	MaxParallel string
	// Canary is how many instances run the new release, and must stay healthy, before the
	// rest are replaced; 0 replaces all in MaxParallel batches.
	Canary int
	// AutoRevert puts the previous release back when the new one fails its health checks.
	AutoRevert bool
}

// Parallel resolves MaxParallel for a service of n instances: a percentage rounds up, and the
// result is at least 1 and at most n, so a rollout always makes progress and never exceeds
// the service.
func (r Rollout) Parallel(n int) int {
	p := 1
	if pct, ok := strings.CutSuffix(r.MaxParallel, "%"); ok {
		if f, err := strconv.ParseFloat(pct, 64); err == nil {
			p = int(math.Ceil(f * float64(n) / 100))
		}
	} else if v, err := strconv.Atoi(r.MaxParallel); err == nil {
		p = v
	}
	return max(1, min(p, n))
}
