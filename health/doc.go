// Package health decides whether an instance of a service is healthy.
//
// A Probe checks one instance once (an HTTP GET, a TCP connect or a command, each bounded by
// its own timeout); Wait decides whether one instance becomes healthy (its unit active and
// not restarted, its probe passing continuously for a minimum time, all before a deadline),
// and WaitAll does so for a batch in parallel.
//
// The unit's state comes from a func the caller passes, so this package needs no D-Bus, and
// the Spec it reads is its own value type: the rollout engine converts service.json's health
// block (units.Health) into it.
package health
