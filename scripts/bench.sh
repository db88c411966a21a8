#!/usr/bin/env bash
# make bench: deploy time, bytes fetched, disk used and webhooks per second of the real
# agent against `git clone --depth 1`, on a generated 10,000-file repository served over
# loopback. Prints a table and writes .bench/results.json; flags go to scripts/bench
# (go run ./scripts/bench -h). Every process and temporary directory it makes is removed.
# Then what a configuration change in etcd costs (BenchmarkAgent_configChange: a real
# systemd user manager, which needs root here, and an in-process etcd), and what a fleet of
# 50 agents does with a push (BenchmarkFleet_50Agents: real agent processes, one etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bin/pushdeploy ]; then
  make build
fi
go run ./scripts/bench "$@"

changes=5
echo
echo "configuration change in etcd → environment file → health-checked rolling restart"
echo "(go test ./agent -bench BenchmarkAgent_configChange -benchtime ${changes}x: 2 instances of the"
echo " demo's hello server, one per batch, HTTP check every 100ms, min_healthy_time 300ms, debounce 200ms)"
out=$(go test -run '^$' -bench 'BenchmarkAgent_configChange$' -benchtime "${changes}x" ./agent 2>&1) || { printf '%s\n' "$out" | tail -30; exit 1; }
line=$(printf '%s\n' "$out" | grep '^BenchmarkAgent_configChange' || true)
metric() { printf '%s\n' "$line" | awk -v unit="$1" '{for (i = 2; i < NF; i++) if ($(i+1) == unit) printf "%g\n", $i}'; }
if [ -z "$line" ]; then
  printf '%s\n' "$out" | grep -E 'SKIP|skip' | head -3
  echo "(skipped: see above)"
else
  printf '\n%-58s %s\n' "metric" "pushdeploy"
  printf '%-58s %s\n' "------" "----------"
  printf '%-58s %s ms\n' "5. env set -> first instance answering with the new value" "$(metric set-to-first-ms)"
  printf '%-58s %s ms\n' "5. env set -> every batch restarted and healthy" "$(metric rollout-ms)"
  printf '%-58s %s\n' "5. etcd round trips per push deploy" "$(metric etcd-reads/deploy)"
  printf '%-58s %s\n' "5. etcd round trips per change, by the agent" "$(metric etcd-ops/change)"
  echo
  echo "Averages over $changes changes. The first instance answers after the debounce, one read of the"
  echo "document, the environment file and one restart; the rollout adds each batch's health check."
fi

echo
echo "fleet: 50 real agents on this machine, one etcd, a deploy script that sleeps 0.2s"
echo "(go test ./cmd/pushdeploy -bench BenchmarkFleet_50Agents -benchtime 1x; about 90s)"
out=$(go test -run '^$' -bench 'BenchmarkFleet_50Agents$' -benchtime 1x -timeout 10m ./cmd/pushdeploy 2>&1) || { printf '%s\n' "$out" | tail -30; exit 1; }
line=$(printf '%s\n' "$out" | grep '^BenchmarkFleet_50Agents' || true)
if [ -z "$line" ]; then
  printf '%s\n' "$out" | grep -E 'SKIP|skip' | head -3
  echo "(skipped: see above)"
  exit 0
fi
printf '\n%-66s %s\n' "metric" "pushdeploy"
printf '%-66s %s\n' "------" "----------"
for mp in "1 mp1" "5 mp5" "25%,_1_canary mp25pct"; do
  set -- $mp
  printf '%-66s %.2f s (sum of the 50 deploys %.2f s)\n' "6. push -> 50 hosts converged, max_parallel ${1//_/ }" \
    "$(metric "converge-$2-s")" "$(metric "deploys-sum-$2-s")"
done
printf '%-66s %s / %s ms\n' "6. halt: canary's failure recorded -> waiting host gives up, p50/p99" "$(metric halt-p50-ms)" "$(metric halt-p99-ms)"
printf '%-66s %s ms\n' "6. catch-up: a host down during the push, agent start -> deployed" "$(metric catchup-ms)"
printf '%-66s %s\n' "6. etcd requests per host per deploy" "$(metric etcd-req/host/deploy)"
printf '%-66s %s\n' "6. etcd requests per host per idle minute (lease_ttl 10s)" "$(metric etcd-req/host/idle-min)"
