package units

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// checkStopTimeout bounds how long a check unit that is stopped (its check timed out on the
// agent's side) gets to exit before it is killed: a check has no state to save.
const checkStopTimeout = "1s"

// maxUserName is the longest user name systemd accepts for a dynamic user (utmp's limit).
const maxUserName = 31

// CheckUnitName is the unit that runs instance n's command health check; instance 0 names
// the template. It is pushdeploy-<app>-<service>.check@<n>.service: a "." can never be in a
// service name, so no service's units can take the name.
//
// A command check runs as a unit of the same manager as the service, never in the agent: a
// release's check is the release's code, and must run with the service's user and sandbox,
// not with the agent's rights. The agent starts the instance of the check unit for every
// check and waits for its job: "done" is a passing check.
func CheckUnitName(app, service string, instance int) string {
	n := ""
	if instance > 0 {
		n = strconv.Itoa(instance)
	}
	return "pushdeploy-" + app + "-" + service + ".check@" + n + ".service"
}

// HasCheckUnit reports whether Generate renders a check unit for s: its health check is a
// command.
func HasCheckUnit(s *Service) bool { return s.Health != nil && len(s.Health.Command) > 0 }

// DynamicUserName is the User= of s's units under a system manager when service.json names
// no user: pushdeploy-<app>-<service>, the name systemd would derive from the template
// itself, or when that is longer than systemd allows (31 characters), pushdeploy- and a
// hash of both names. The service's template and its check unit both name it with
// DynamicUser=yes, and systemd gives units that share a dynamic user's name one UID: the
// check acts with exactly the service's rights.
func DynamicUserName(app, service string) string {
	name := "pushdeploy-" + app + "-" + service
	if len(name) <= maxUserName {
		return name
	}
	sum := sha256.Sum256([]byte(app + "/" + service))
	return "pushdeploy-" + hex.EncodeToString(sum[:])[:maxUserName-len("pushdeploy-")]
}

// checkTemplate renders the check unit every instance of s shares: a oneshot running the
// health check command, with the service's working directory, environment, user, limits and
// sandbox (runContext and confine, the code the service's template uses), bounded by the
// check's timeout.
func checkTemplate(spec *Spec, s *Service, opts Options) string {
	u := &unitText{}
	header(u, fmt.Sprintf("Health check of service %s of app %s; instance n's check runs as %s.", s.Name, opts.App,
		strings.Replace(CheckUnitName(opts.App, s.Name, 0), "@", "@n", 1)), opts)
	u.comment("The agent starts it for every check; it runs as the service does, with its sandbox.")
	u.section("Unit")
	u.set("Description", fmt.Sprintf("%s %s health check (instance %%i, release %s)",
		opts.App, s.Name, specifiers(release(opts))))
	// Started as often as health.interval says, deliberately: no start limit applies.
	u.set("StartLimitIntervalSec", "0")

	u.section("Service")
	u.set("Type", "oneshot")
	u.set("ExecStart", execLine(program(s.Health.Command, s, opts)))
	runContext(u, spec, s, opts)
	timeout := s.Health.Timeout
	if timeout <= 0 { // a hand-built Spec; 0 would mean no timeout at all
		timeout = DefaultHealthTimeout
	}
	u.set("TimeoutStartSec", timespan(timeout))
	u.set("TimeoutStopSec", checkStopTimeout)
	confine(u, spec, s, opts)
	return u.String()
}
