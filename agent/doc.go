// Package agent is the pushdeploy daemon: it answers webhooks, keeps one deploy queue per
// app where the newest push wins, runs the deploy pipeline (stale check, pinned fetch,
// release, configuration, script, services, switch), queues restarts, rollbacks and
// configuration changes from etcd through the same queues, takes part in its fleet (a
// registry entry, the gate a deploy passes: deploy lock, halts, canaries, slots), catches
// up with branches it missed (kind reconcile), reports deploys to GitHub and serves
// metrics. It wires the leaf packages together and owns nothing they own:
//
//   - config: the configuration file it runs with (New takes a *config.Config);
//   - state: the durable record of every deploy and delivery;
//   - admin: the admin API on its unix socket, which serves the agent's adminBackend;
//   - release: the git cache, the object store and the release directories;
//   - units: service.json and the units generated from it;
//   - rollout (with rollout/systemd, health, haproxy): what happens to an app's instances,
//     for deploys, rollbacks, restarts and configuration changes alike;
//   - renv: the apps' configuration documents in etcd;
//   - fleet: the hosts of an environment in etcd (registry, lock, halts, canaries, slots);
//   - hooks: webhook deliveries and GitHub's API;
//   - ui: the status page on its own listener, which serves the agent's uiBackend;
//   - notify: notifications of deploys to Slack-compatible and signed JSON webhooks;
//   - internal/logtail: following a deploy's log while it is written (the status page's
//     live log, `pushdeploy logs -f`);
//   - internal/sdnotify: telling systemd it is ready, what it does (STATUS=, from the
//     queues) and that it stops, and pinging the watchdog while its own liveness checks
//     (livenessChecks: listeners, state, queue workers) pass;
//   - internal/datadir: every path under data_dir.
//
// Local answers the CLI's questions from the data directory while the agent is down; the
// running agent answers the same ones through the admin API. Imports flow one way: the CLI
// (cmd/pushdeploy) imports agent, agent imports the leaves, and no leaf imports agent.
package agent
