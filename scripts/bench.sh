#!/usr/bin/env bash
# make bench: deploy time, bytes fetched, disk used and webhooks per second of the real
# agent against `git clone --depth 1`, on a generated 10,000-file repository served over
# loopback. Prints a table and writes .bench/results.json; flags go to scripts/bench
# (go run ./scripts/bench -h). Every process and temporary directory it makes is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bin/pushdeploy ]; then
  make build
fi
exec go run ./scripts/bench "$@"
