// Package health decides whether an instance of a service is healthy.
//
// A Probe checks one instance once (an HTTP GET or a TCP connect to 127.0.0.1:PORT, or a
// command run by the probe the caller gives, each bounded by its own timeout); a command
// check is the release's code, so this package never executes it; Wait decides whether one instance becomes healthy (its unit active and
// not restarted, its probe passing continuously for a minimum time, all before a deadline),
// and WaitAll does so for a batch in parallel.
//
// The unit's state comes from a func the caller passes, so this package needs no D-Bus, and
// the Spec it reads is its own value type: the rollout engine converts service.json's health
// block (units.Health) into it.
package health
