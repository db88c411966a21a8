#!/usr/bin/env bash
# make demo: a local `git push origin main:deploy-production` deploys a sample app.
# Everything lives in a temporary directory and is removed at the end; the agent listens on
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in git curl; do
  command -v "$tool" >/dev/null || { echo "make demo needs $tool (Debian: apt-get install $tool)"; exit 1; }
done
bin=$PWD/bin/pushdeploy
work=$(mktemp -d /tmp/pushdeploy-demo.XXXXXX)
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

bold=$(tput bold 2>/dev/null || true); plain=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '    %s\n' "$*"; }
run() { printf '    $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/    /'; }

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
git_() { git -c user.name=Demo -c user.email=demo@example.invalid -c init.defaultBranch=main "$@"; }

step "1. A sample app: a tiny HTTP server with a health endpoint, built once"
mkdir -p "$work/hello/bin"
CGO_ENABLED=0 go build -trimpath -o "$work/hello/bin/hello" ./scripts/demo/hello
echo "1" > "$work/hello/VERSION"
ln -s bin/hello "$work/hello/start"
git_ -C "$work/hello" init -q
git_ -C "$work/hello" add -A
git_ -C "$work/hello" commit -qm "hello, version 1"
say "repo $work/hello: bin/hello (the built artifact), VERSION, start -> bin/hello (symlink)"
say "(deploys ship what was built and tested; nothing is built on the host)"

step "2. A bare \"origin\" whose post-receive hook sends signed GitHub-format webhooks"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret"
chmod 600 "$work/secret"
git_ init -q --bare "$work/origin.git"
git -C "$work/origin.git" config uploadpack.allowReachableSHA1InWant true
say "secret: $work/secret (HMAC-SHA256; never logged)"

step "3. The agent: config and start"
cat > "$work/agent.yaml" <<YAML
listen: 127.0.0.1:0
data_dir: $work/data
host: demo-host
environments: [production]
apps:
  hello:
    repo: demo/hello
    remote: file://$work/origin.git
    secret_file: $work/secret
    keep_releases: 5
YAML
sed 's/^/    /' "$work/agent.yaml"
"$bin" agent --config "$work/agent.yaml" --log-format json >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do
  port=$(grep -o '"listen":"127.0.0.1:[0-9]*"' "$work/agent.log" | grep -o '[0-9]*"$' | tr -d '"' || true)
  [ -n "$port" ] && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "agent did not start:"; cat "$work/agent.log"; exit 1; }
say "agent pid $agent_pid listening on 127.0.0.1:$port"
cat > "$work/origin.git/hooks/post-receive" <<HOOK
#!/bin/sh
exec "$bin" hooks post-receive --repo demo/hello --secret-file "$work/secret" --url http://127.0.0.1:$port/webhook/hello
HOOK
chmod +x "$work/origin.git/hooks/post-receive"
run curl -s "http://127.0.0.1:$port/healthz"

# wait_deploy waits for the newest deploy of hello to finish and prints its status.
wait_deploy() {
  for _ in $(seq 300); do
    st=$("$bin" history hello --config "$work/agent.yaml" --json -n 1 | sed -n 's/^ *"status": "\([a-z-]*\)".*/\1/p')
    case "$st" in succeeded|failed|stale|superseded) echo "$st"; return;; esac
    sleep 0.1
  done
  echo "timeout"
}

step "4. git push origin main:deploy-production"
git_ -C "$work/hello" remote add origin "$work/origin.git"
git_ -C "$work/hello" push -q origin main:deploy-production 2>&1 | sed 's/^/    /'
say "deploy: $(wait_deploy)"
run "$bin" status --config "$work/agent.yaml"
say "the release is the commit's exact tree, hard links to read-only objects:"
run ls -l "$work/data/apps/hello/current/" "$work/data/apps/hello/current/bin"
printf '    $ %s\n' "PORT=18080 current/start & curl 127.0.0.1:18080/"
PORT=18080 "$work/data/apps/hello/current/start" 2>/dev/null & app=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:18080/ >/dev/null 2>&1 && break; sleep 0.1; done
curl -s http://127.0.0.1:18080/ | sed 's/^/    /'; kill $app; wait $app 2>/dev/null || true
say "(service units that run it under systemd come with the next release of pushdeploy)"

step "5. A second version: only the change is fetched"
echo "2" > "$work/hello/VERSION"
git_ -C "$work/hello" commit -qam "hello, version 2"
git_ -C "$work/hello" push -q origin main:deploy-production 2>&1 | sed 's/^/    /'
say "deploy: $(wait_deploy)"
run "$bin" history hello --config "$work/agent.yaml"
id=$("$bin" history hello --config "$work/agent.yaml" --json -n 1 | sed -n 's/^ *"id": "\(.*\)".*/\1/p')
run "$bin" history hello "$id" --config "$work/agent.yaml"
run cat "$work/data/apps/hello/current/VERSION"
run "$bin" releases list hello --config "$work/agent.yaml"
say "unchanged files are the same inode in both releases (one object on disk):"
run stat -c '%i %h %n' "$work"/data/apps/hello/releases/*/bin/hello

step "6. Proof: every file re-hashed against the git tree"
run "$bin" releases check hello --config "$work/agent.yaml"

step "7. A late webhook for version 1 is refused as stale: no rollback by accident"
v1=$(git -C "$work/hello" rev-parse HEAD~1)
printf '%s %s refs/heads/deploy-production\n' 0000000000000000000000000000000000000000 "$v1" |
  (cd "$work/origin.git" && "$bin" hooks post-receive --repo demo/hello --secret-file "$work/secret" --url "http://127.0.0.1:$port/webhook/hello") | sed 's/^/    /'
say "deploy: $(wait_deploy)"
run "$bin" history hello --config "$work/agent.yaml" -n 1
run cat "$work/data/apps/hello/current/VERSION"

step "8. Stop the agent (SIGTERM drains); state stays readable from disk"
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""
run "$bin" status hello --config "$work/agent.yaml"
step "Done. Removing $work"
