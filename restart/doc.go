// Package restart owns what happens to an app's instances once their units are installed:
// health checks, rolling restarts in batches, draining instances in haproxy around each
// restart, and the fleet semaphore that bounds how many instances are out of rotation at
// once.
//
// Health: a Probe checks one instance once (an HTTP GET, a TCP connect or a command, each
// bounded by its own timeout); Wait decides whether one instance becomes healthy (its unit
// active and not restarted, its probe passing continuously for a minimum time, all before a
// deadline), and WaitAll does so for a batch in parallel. The unit's state comes from a func
// the caller passes, so this package needs no D-Bus, and the Spec it reads is its own value
// type: the agent converts service.json's health block (units.Health) into it.
package restart
