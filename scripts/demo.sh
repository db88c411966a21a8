#!/usr/bin/env bash
# make demo: a local `git push origin main:deploy-production` deploys a sample app, which then
# runs as systemd services: two instances of a tiny HTTP server, started by the agent over
# D-Bus. A third version whose health check fails is reverted by the host on its own; the
# app's configuration lives in etcd (Debian's etcd-server, started for the demo), and a
# change is a health-checked rolling restart, a bad one reverted; a rolling restart goes
# through the app's queue. It uses your systemd user manager when one runs, otherwise a private one (as root).
# Everything lives in one work directory and is removed at the end, units included; the agent
# and the app listen on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in git curl systemctl etcd; do
  command -v "$tool" >/dev/null || { pkg=${tool/systemctl/systemd}; echo "make demo needs $tool (Debian: apt-get install ${pkg/etcd/etcd-server})"; exit 1; }
done
bin=$PWD/bin/pushdeploy
app=hello

bold=$(tput bold 2>/dev/null || true); plain=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '    %s\n' "$*"; }
run() { printf '    $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/    /'; }
# units lists the app's units, without systemctl's legend.
units() {
  printf '    $ %s\n' "systemctl --user list-units 'pushdeploy-*'"
  sc list-units 'pushdeploy-*' 2>&1 | sed '/^$/,$d; s/^/    /'
}
# runsc shows and runs systemctl --user against the manager the demo uses.
runsc() { printf '    $ systemctl --user %s\n' "$*"; sc "$@" 2>&1 | sed 's/^/    /'; }

# The work directory holds the data dir, hence the releases the services run from. Not under
# /tmp or /var/tmp: units get PrivateTmp=yes, which hides those from the service, and the unit
# generator refuses such release directories. Readable by all (755), so a service running as
# another user (a dynamic user under a system manager) can read its release.
if [ "$(id -u)" = 0 ]; then base=/var/lib; else base=${XDG_CACHE_HOME:-$HOME/.cache}; fi
if [ ! -d "$base" ]; then mkdir -p "$base"; chmod 755 "$base"; fi
work=$(mktemp -d "$base/pushdeploy-demo.XXXXXX")
chmod 755 "$work"

agent_pid=""    # the agent, once started
etcd_pid=""     # the demo's etcd, once started
manager=""      # user: the invoking user's own user manager; private: one started for the demo
manager_pid=""  # the private manager's `go run`, while it runs
sd_env=()       # what systemctl --user needs to reach the manager
units_written="" # set once the agent may have written units into the user's unit directory

# sc runs systemctl --user against the manager the demo uses.
sc() { env ${sd_env[@]+"${sd_env[@]}"} systemctl --user --no-pager "$@"; }

cleanup() {
  set +e
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null; fi
  if [ -n "$etcd_pid" ]; then kill "$etcd_pid" 2>/dev/null; wait "$etcd_pid" 2>/dev/null; fi
  if [ "$manager" = user ] && [ -n "$units_written" ]; then
    say "stopping the app and removing the units the demo installed into $unit_dir:"
    printf '    $ %s\n' "systemctl --user stop $app_target; systemctl --user disable $app_target"
    sc stop "$app_target" 2>&1 | sed 's/^/    /'
    sc disable "$app_target" 2>&1 | sed 's/^/    /'
    for f in "$unit_dir"/pushdeploy-"$app"-* "$unit_dir"/pushdeploy-"$app".*; do
      [ -e "$f" ] || continue
      say "rm -r $f"; rm -rf "$f"
    done
    sc daemon-reload
    sc reset-failed "pushdeploy-$app-*" 2>/dev/null
  fi
  if [ -n "$manager_pid" ]; then
    say "stopping the private systemd user manager (closing its stdin): its units stop with it"
    exec 9>&-
    wait "$manager_pid"
    sed 's/^/    /' "$work/manager.err" | grep -v 'running (launcher pid' || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
git_() { git -c user.name=Demo -c user.email=demo@example.invalid -c init.defaultBranch=main "$@"; }

# free_port_pair prints a port p such that p and p+1 are free on 127.0.0.1.
free_port_pair() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 10000))
    if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! (: <"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; then
      echo "$p"; return
    fi
  done
  echo "no free port pair found" >&2; return 1
}

step "0. Which systemd manager runs the app"
app_target=pushdeploy-$app.target
state=""
if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  state=$(timeout 10 systemctl --user show -p SystemState --value 2>/dev/null || true)
fi
if [ "$state" = running ] || [ "$state" = degraded ]; then
  manager=user
  unit_dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
  bus=$DBUS_SESSION_BUS_ADDRESS
  journal_dir=""
  say "your systemd user manager runs (DBUS_SESSION_BUS_ADDRESS is set and its SystemState is"
  say "\"$state\"): the demo uses it. Units go into $unit_dir"
  say "and are stopped and removed again at the end."
  existing=$(ls -d "$unit_dir"/pushdeploy-"$app"-* "$unit_dir"/pushdeploy-"$app".* 2>/dev/null || true)
  if [ -n "$existing" ]; then
    say "but $unit_dir already has units of an app named $app:"
    printf '%s\n' "$existing" | sed 's/^/      /'
    say "the demo would replace them and then remove them. Remove them first, or run the demo"
    say "as root without your user manager: sudo env -u DBUS_SESSION_BUS_ADDRESS make demo"
    exit 1
  fi
else
  manager=private
  if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
    say "no user manager of yours is reachable (DBUS_SESSION_BUS_ADDRESS is not set):"
  else
    say "DBUS_SESSION_BUS_ADDRESS is set, but the user manager there does not run"
    say "(systemctl --user show -p SystemState says \"${state:-nothing}\"):"
  fi
  if [ "$(id -u)" != 0 ]; then
    say "a private user manager needs root (it mounts and creates cgroups). Run the demo as"
    say "root (sudo make demo), or from a login session whose systemd user manager runs"
    say "(systemctl --user status; a user without one: loginctl enable-linger \$USER)."
    exit 1
  fi
  say "the demo starts a private systemd user manager, with its own D-Bus bus, journal and"
  say "cgroup, in a mount namespace of its own (internal/usermanager; needs root)."
  mkfifo "$work/manager.in"
  printf '    $ %s\n' "go run ./scripts/demo/usermanager -dir $work/manager <fifo &"
  go run ./scripts/demo/usermanager -dir "$work/manager" <"$work/manager.in" >"$work/manager.out" 2>"$work/manager.err" &
  manager_pid=$!
  # The demo holds the write end of its stdin: closing it (at the end, or if this script
  # dies) makes it stop the manager and every unit.
  exec 9>"$work/manager.in"
  for _ in $(seq 1200); do # go run compiles it first
    grep -q '^runtime_dir=' "$work/manager.out" && break
    if ! kill -0 "$manager_pid" 2>/dev/null; then
      wait "$manager_pid" || true
      manager_pid=""
      sed 's/^/    /' "$work/manager.err"
      # (go run exits 1 whatever the program's status, so read what it said)
      if grep -q 'systemd user manager unavailable' "$work/manager.err"; then
        say "this machine cannot run a private user manager (above). Run the demo from a login"
        say "session whose systemd user manager runs (systemctl --user status)."
      fi
      exit 1
    fi
    sleep 0.1
  done
  grep -q '^runtime_dir=' "$work/manager.out" || { say "the private manager did not start:"; sed 's/^/    /' "$work/manager.err"; exit 1; }
  val() { sed -n "s/^$1=//p" "$work/manager.out"; }
  bus=$(val bus); unit_dir=$(val unit_dir); journal_dir=$(val journal_dir); runtime_dir=$(val runtime_dir)
  sed 's/^/    /' "$work/manager.out"
  # systemctl reads unit files that are not loaded (templates) itself, from
  # $XDG_CONFIG_HOME/systemd/user.
  sd_env=("DBUS_SESSION_BUS_ADDRESS=$bus" "XDG_RUNTIME_DIR=$runtime_dir" "XDG_CONFIG_HOME=${unit_dir%/systemd/user}")
  say "below, systemctl --user runs with the private manager's environment:"
  say "${sd_env[*]}"
fi
runsc show -p SystemState -p Version

step "1. A sample app: a tiny HTTP server with a health endpoint, built once"
port=$(free_port_pair)
mkdir -p "$work/hello/bin"
CGO_ENABLED=0 go build -trimpath -o "$work/hello/bin/hello" ./scripts/demo/hello
echo "1" > "$work/hello/VERSION"
ln -s bin/hello "$work/hello/start"
cat > "$work/hello/service.json" <<JSON
{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": $port, "health": {"http": "/health", "healthy_deadline": "10s"}}}}
JSON
git_ -C "$work/hello" init -q
git_ -C "$work/hello" add -A
git_ -C "$work/hello" commit -qm "hello, version 1"
say "repo $work/hello: bin/hello (the built artifact), VERSION, start -> bin/hello (symlink)"
say "and service.json, which says what the release runs:"
run cat "$work/hello/service.json"
say "service web: 2 instances of bin/hello, instance n on PORT=$port+n-1, health at /health"
say "(an instance not healthy within 10s fails the rollout)"
say "(deploys ship what was built and tested; nothing is built on the host)"

step "2. A bare \"origin\" whose post-receive hook sends signed GitHub-format webhooks"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret"
chmod 600 "$work/secret"
git_ init -q --bare "$work/origin.git"
git -C "$work/origin.git" config uploadpack.allowReachableSHA1InWant true
say "secret: $work/secret (HMAC-SHA256; never logged)"

step "3. etcd, which holds the app's configuration"
eport=$(free_port_pair)
printf '    $ %s\n' "etcd --data-dir $work/etcd --listen-client-urls http://127.0.0.1:$eport … &"
etcd --name demo --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$eport" --advertise-client-urls "http://127.0.0.1:$eport" \
  --listen-peer-urls "http://127.0.0.1:$((eport + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((eport + 1))" \
  --initial-cluster "demo=http://127.0.0.1:$((eport + 1))" >"$work/etcd.log" 2>&1 9>&- &
etcd_pid=$!
export ETCDCTL_ENDPOINTS=http://127.0.0.1:$eport
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$eport/health" >/dev/null && break
  kill -0 "$etcd_pid" 2>/dev/null || { cat "$work/etcd.log"; exit 1; }
  sleep 0.1
done
say "etcd $(etcd --version | head -n 1 | cut -d' ' -f3) on 127.0.0.1:$eport (ETCDCTL_ENDPOINTS, which pushdeploy env reads too)"
say "the app's configuration: one typed JSON document per app and environment, a key per leaf"
run "$bin" env set "$app/production" greeting=hi workers=4 secret.api_token=t0ps3cret
run "$bin" env get "$app/production"
say "what the agent will render for the app's units (secrets masked here, not in the file):"
run "$bin" env get "$app/production" --env

step "4. The agent: config and start"
{
  cat <<YAML
listen: 127.0.0.1:0
data_dir: $work/data
host: demo-host
environments: [production]
systemd:
  scope: user
  unit_dir: $unit_dir
  bus: $bus
YAML
  if [ -n "$journal_dir" ]; then echo "  journal_dir: $journal_dir"; fi
  cat <<YAML
  settle: 1s
apps:
  $app:
    repo: demo/hello
    remote: file://$work/origin.git
    secret_file: $work/secret
    keep_releases: 5
etcd:
  endpoints: ["http://127.0.0.1:$eport"]
YAML
} > "$work/agent.yaml"
sed 's/^/    /' "$work/agent.yaml"
say "systemd: the agent installs the units into unit_dir and starts them over D-Bus at bus;"
say "a start that fails quotes the unit's journal (journal_dir, or the user's journal)."
"$bin" agent --config "$work/agent.yaml" --log-format json >"$work/agent.log" 2>&1 9>&- &
agent_pid=$!
units_written=yes
for _ in $(seq 100); do
  aport=$(grep -o '"listen":"127.0.0.1:[0-9]*"' "$work/agent.log" | grep -o '[0-9]*"$' | tr -d '"' || true)
  [ -n "$aport" ] && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log"; exit 1; }
  sleep 0.1
done
[ -n "$aport" ] || { echo "agent did not start:"; cat "$work/agent.log"; exit 1; }
say "agent pid $agent_pid listening on 127.0.0.1:$aport"
cat > "$work/origin.git/hooks/post-receive" <<HOOK
#!/bin/sh
exec "$bin" hooks post-receive --repo demo/hello --secret-file "$work/secret" --url http://127.0.0.1:$aport/webhook/$app
HOOK
chmod +x "$work/origin.git/hooks/post-receive"
run curl -s "http://127.0.0.1:$aport/healthz"

# wait_deploy waits for the newest deploy of the app to finish and prints its status.
wait_deploy() {
  for _ in $(seq 600); do
    st=$("$bin" history "$app" --config "$work/agent.yaml" --json -n 1 | sed -n 's/^ *"status": "\([a-z-]*\)".*/\1/p')
    case "$st" in succeeded|failed|stale|superseded) echo "$st"; return;; esac
    sleep 0.1
  done
  echo "timeout"
}
# expect_deploy waits for the newest deploy; if its status is not $1 it shows the deploy and
# its log, and the demo stops there.
expect_deploy() {
  local st id
  st=$(wait_deploy)
  say "deploy: $st"
  [ "$st" = "$1" ] && return
  id=$("$bin" history "$app" --config "$work/agent.yaml" --json -n 1 | sed -n 's/^ *"id": "\(.*\)".*/\1/p')
  say "expected $1; the deploy and its log:"
  run "$bin" history "$app" "$id" --config "$work/agent.yaml"
  exit 1
}
# newest_id prints the id of the app's newest record; after_id waits until a newer one exists.
newest_id() { "$bin" history "$app" --config "$work/agent.yaml" --json -n 1 | sed -n 's/^ *"id": "\(.*\)".*/\1/p'; }
after_id() {
  for _ in $(seq 300); do [ "$(newest_id)" != "$1" ] && return; sleep 0.1; done
  say "no new record after 30s"; exit 1
}
# answers curls every instance.
answers() {
  for i in 1 2; do
    run curl -s "http://127.0.0.1:$((port + i - 1))/"
  done
}

step "5. git push origin main:deploy-production"
git_ -C "$work/hello" remote add origin "$work/origin.git"
git_ -C "$work/hello" push -q origin main:deploy-production 2>&1 | sed 's/^/    /'
expect_deploy succeeded
say "the agent fetched the pushed commit, laid it out as a release, wrote the units for its"
say "service.json, started every instance (each must stay active for settle: 1s), then"
say "switched current:"
run "$bin" status --config "$work/agent.yaml"
say "the release is the commit's exact tree, hard links to read-only objects:"
run ls -l "$work/data/apps/$app/current/" "$work/data/apps/$app/current/bin"
say "the app runs as systemd services: a template unit, one instance per process, a target:"
units
say "the template names the release directory itself (never current), and is hardened:"
unit=$(sc cat "pushdeploy-$app-web@.service" 2>&1) || { printf '%s\n' "$unit"; exit 1; }
printf '    $ %s\n' "systemctl --user cat pushdeploy-$app-web@.service | head -n 16"
printf '%s\n' "$unit" | sed -n '1,16p' | sed 's/^/    /'
printf '    $ %s\n' "systemctl --user cat pushdeploy-$app-web@.service | grep -E '^(No|Private|Protect|ReadOnly)'"
printf '%s\n' "$unit" | grep -E '^(No|Private|Protect|ReadOnly)' | sed 's/^/    /'
say "instance n gets its PORT from a drop-in:"
printf '    $ %s\n' "systemctl --user cat pushdeploy-$app-web@2.service | sed -n '/instance.conf/,\$p'"
sc cat "pushdeploy-$app-web@2.service" 2>&1 | sed -n '/instance.conf/,$p' | sed 's/^/    /'
say "every instance answers, with version 1:"
run curl -s "http://127.0.0.1:$port/health"
answers

step "6. A second version: only the change is fetched, the instances restart one by one"
echo "2" > "$work/hello/VERSION"
git_ -C "$work/hello" commit -qam "hello, version 2"
git_ -C "$work/hello" push -q origin main:deploy-production 2>&1 | sed 's/^/    /'
expect_deploy succeeded
say "both instances answer version 2:"
answers
say "the units now name the new release:"
printf '    $ %s\n' "systemctl --user cat pushdeploy-$app-web@.service | grep ExecStart="
sc cat "pushdeploy-$app-web@.service" 2>&1 | grep '^ExecStart=' | sed 's/^/    /'
units
run "$bin" history "$app" --config "$work/agent.yaml"
id=$("$bin" history "$app" --config "$work/agent.yaml" --json -n 1 | sed -n 's/^ *"id": "\(.*\)".*/\1/p')
run "$bin" history "$app" "$id" --config "$work/agent.yaml"
run cat "$work/data/apps/$app/current/VERSION"
run "$bin" releases list "$app" --config "$work/agent.yaml"
say "unchanged files are the same inode in both releases (one object on disk):"
run stat -c '%i %h %n' "$work"/data/apps/"$app"/releases/*/bin/hello

step "7. Proof: every file re-hashed against the git tree"
run "$bin" releases check "$app" --config "$work/agent.yaml"

step "8. A late webhook for version 1 is refused as stale: no rollback by accident"
v1=$(git -C "$work/hello" rev-parse HEAD~1)
printf '%s %s refs/heads/deploy-production\n' 0000000000000000000000000000000000000000 "$v1" |
  (cd "$work/origin.git" && "$bin" hooks post-receive --repo demo/hello --secret-file "$work/secret" --url "http://127.0.0.1:$aport/webhook/$app") | sed 's/^/    /'
expect_deploy stale
run "$bin" history "$app" --config "$work/agent.yaml" -n 1
run cat "$work/data/apps/$app/current/VERSION"
answers

step "9. A third version whose health check fails: the host reverts to version 2 by itself"
echo "3" > "$work/hello/VERSION"
cat > "$work/hello/service.json" <<JSON
{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": $port,
  "health": {"http": "/nope", "interval": "200ms", "timeout": "500ms", "min_healthy_time": "500ms", "healthy_deadline": "2s"}}}}
JSON
git_ -C "$work/hello" commit -qam "hello, version 3: health check at /nope, which hello answers 404"
say "version 3 checks /nope, which hello answers with 404: it never becomes healthy."
run cat "$work/hello/service.json"
git_ -C "$work/hello" push -q origin main:deploy-production 2>&1 | sed 's/^/    /'
expect_deploy failed
say "instance 1 restarted on version 3 and failed its check; the rollout stopped there"
say "(instance 2 was never touched), instance 1 was put back on version 2 and checked healthy"
say "again, current stayed on version 2 and version 3 is marked bad with the reason:"
id=$("$bin" history "$app" --config "$work/agent.yaml" --json -n 1 | sed -n 's/^ *"id": "\(.*\)".*/\1/p')
printf '    $ %s\n' "pushdeploy history $app $id | grep -E '^(status|error) |unhealthy|revert|marked bad'"
"$bin" history "$app" "$id" --config "$work/agent.yaml" 2>&1 |
  grep -E '^(status|error) |unhealthy|revert|marked bad' | cut -c1-220 | sed 's/^/    /'
run "$bin" releases list "$app" --config "$work/agent.yaml"
run cat "$work/data/apps/$app/current/VERSION"
say "both instances answer version 2:"
answers

step "10. A configuration change in etcd: a health-checked rolling restart; a bad one reverted"
before=$(newest_id)
run "$bin" env set "$app/production" greeting="hello from etcd"
after_id "$before"
expect_deploy succeeded
say "the agent saw the change (after 1s of quiet), wrote the environment file and restarted"
say "the instances batch by batch, each health-checked: a record of kind config"
run "$bin" history "$app" --config "$work/agent.yaml" -n 1
answers
run ls -l "$work/data/apps/$app/config/env"
say "now a mistyped setting: hello's /health answers 503 when DB_URL is not a postgres:// URL"
before=$(newest_id)
run "$bin" env set "$app/production" db_url=mysql://db.internal/app
after_id "$before"
expect_deploy failed
id=$("$bin" history "$app" --config "$work/agent.yaml" --json -n 1 | sed -n 's/^ *"id": "\(.*\)".*/\1/p')
printf '    $ %s\n' "pushdeploy history $app $id | sed -n '/^error/,/^\$/{s/^error *//;p;}' | fold -s -w 100"
"$bin" history "$app" "$id" --config "$work/agent.yaml" 2>&1 | sed -n '/^error/,/^$/{s/^error *//;p;}' | grep -v '^ *$' | fold -s -w 100 | sed 's/^/    /'
say "instance 1 was unhealthy on it: the previous environment file came back, instance 1"
say "restarted on it and checked healthy; instance 2 was never touched. Both still answer:"
answers
say "status shows the configuration in place and the one reverted, with the reason:"
printf '    $ %s\n' "pushdeploy status $app | cut -c1-160"
"$bin" status "$app" --config "$work/agent.yaml" 2>&1 | cut -c1-160 | sed 's/^/    /'
say "the bad configuration is not applied again until etcd holds another one:"
run "$bin" env unset "$app/production" db_url

step "11. A rolling restart of the current release, health-checked, through the app's queue"
run "$bin" restart "$app" --config "$work/agent.yaml"
run "$bin" history "$app" --config "$work/agent.yaml" -n 3
answers

step "12. Stop the agent (SIGTERM drains); state stays readable from disk"
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""
run "$bin" status "$app" --config "$work/agent.yaml"
say "the services belong to systemd, not to the agent: they keep running without it:"
answers

step "Done. Cleaning up"
trap - EXIT
cleanup
say "removed $work"
