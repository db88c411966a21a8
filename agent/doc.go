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
//   - units, restart: service.json, the units, their rollout and health checks;
//   - renv: the apps' configuration documents in etcd;
//   - fleet: the hosts of an environment in etcd (registry, lock, halts, canaries, slots);
//   - hooks: webhook deliveries and GitHub's API;
//   - internal/datadir: every path under data_dir.
//
// Local answers the CLI's questions from the data directory while the agent is down; the
// running agent answers the same ones through the admin API. Imports flow one way: the CLI
// (cmd/pushdeploy) imports agent, agent imports the leaves, and no leaf imports agent.
package agent
