// Package rollout owns what happens to an app's instances: the plan (batches from
// service.json: canary first, then max_parallel at a time), running it (restart a batch,
// watch it settle, health-check it, halt), the one revert path (the failed batch first,
// then the earlier ones in reverse order, each health-checked), haproxy rotation around
// every restart and stop, and the retirement of instances a release no longer has.
//
// Deploys, rollbacks, restarts and configuration changes are all a Plan that the Engine
// runs: Deploy installs a release's units and rolls its instances over, Restart rolls the
// installed units (with a PutBack when what changed is the environment file), Remove
// retires an app's instances.
//
// Health checks come from package health: HTTP and TCP probes connect to 127.0.0.1:PORT from
// the agent; a command check is the release's code, so it never runs in the agent: the
// engine starts the instance's check unit (units.CheckUnitName, rendered with the service's
// user and sandbox) through the Manager, and the check passes when its job is done.
//
// The engine talks to the service manager through Manager, declared here and kept small
// (install files, start, restart, stop, enable, state, journal lines). Package
// rollout/systemd implements it with go-systemd over D-Bus; a fake in this package's tests
// covers orderings and failures a real systemd cannot easily produce (a revert whose stop
// fails, a halt, a cancellation at each step) without root.
package rollout
