// Package fleet coordinates the hosts of an environment through etcd, the store pushdeploy
// already uses; it speaks no protocol of its own. It owns these keys under its prefix
// (default /pushdeploy/fleet/):
//
//	hosts/<env>/<host>                  the registry: what a live host runs (bound to its lease)
//	seen/<env>/<host>                   the same, without a lease: what an unreachable host last said
//	apps/<app>/<env>/want/<sha>/<host>  a host that wants to deploy sha, and how it went (lease)
//	apps/<app>/<env>/slot/<host>        a host deploying: the semaphore (lease)
//	apps/<app>/<env>/halt/<sha>         sha failed on a host: no other host starts it
//	apps/<app>/<env>/lock               deploys are locked: who, when and why
//
// Values are JSON. A Session is one agent's lease, kept alive while the agent runs: when
// the agent dies its registry entry, its wants and its slot expire with the lease, so a
// killed host never holds a slot for longer than the lease's TTL.
//
// Acquire is the gate a deploy passes before it fetches anything: it waits while the app
// is locked, gives up when the commit is halted, lets the canary hosts go first (the first
// hosts, in etcd's create order, to want the commit), and takes one of max_parallel slots,
// ordered by the create revision of the slot keys. Everything it waits for it learns from
// one watch on the app's keys, so a halt reaches a waiting host within milliseconds.
//
// Read (status), Lock, Unlock, Resume and Forget serve the CLI, which needs no agent.
// The package imports no other pushdeploy package but internal/etcdconn, the connection.
package fleet
