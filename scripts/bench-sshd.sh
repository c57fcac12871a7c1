#!/usr/bin/env bash
# Times rolloutbot on a real OpenSSH fleet beside its peers, in one run:
#   floor    x/crypto/ssh doing the same per-host work with nothing around it
#   rolloutbot  a staged rollout (10/50/100 %, threshold 30 %, no pause)
#   raw-ssh  xargs -P C ssh …: one ssh process per host, no stages
#   ansible  serial [10%,50%,100%], max_fail_percentage 30
# and prints each one's wall time and its ratio to the floor. The fleet, the
# peers and the floor are ../shared/bench's (SHARED_BENCH to point elsewhere).
# Needs root (the fleet runs sshd as a "fleet" user); installs openssh-server,
# ansible-core, bc and time when missing.
# usage: scripts/bench-sshd.sh [HOSTS [CONCURRENCY]]
set -euo pipefail
n=${1:-200} c=${2:-50}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED_BENCH:-$root/../shared/bench}
fleet=/tmp/fleet
bin=$root/bin/rolloutbot
[ -x "$bin" ] || (cd "$root" && make build >/dev/null)
[ -d "$shared" ] || { echo "no shared bench at $shared (set SHARED_BENCH)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root: the fleet's sshd runs as its own user" >&2; exit 1; }

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ansible-playbook >/dev/null || need+=(ansible-core)
command -v bc >/dev/null || need+=(bc)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

"$shared/fleet-sshd.sh" stop "$fleet" >/dev/null 2>&1 || true
"$shared/fleet-sshd.sh" start "$fleet" >/dev/null
trap '"$shared/fleet-sshd.sh" stop "$fleet" >/dev/null 2>&1 || true' EXIT

# peers.sh writes the host list and known_hosts every tool uses, and times
# the two peers.
peers=$("$shared/peers.sh" "$n" "$c" "$fleet")
raw=$(echo "$peers" | sed -n 's/^raw-ssh .*wall=\([0-9.]*\) s.*/\1/p')
ansible=$(echo "$peers" | sed -n 's/^ansible .*wall=\([0-9.]*\) s.*/\1/p')

# rolloutbot's configuration for the same hosts and recipe.
work=$(mktemp -d)
trap 'rm -rf "$work"; "$shared/fleet-sshd.sh" stop "$fleet" >/dev/null 2>&1 || true' EXIT
{ echo "hosts:"; while read -r h; do printf '  - {id: "%s", address: "%s", port: 2222}\n' "$h" "$h"; done < "$fleet/hosts-$n.txt"; } > "$work/hosts.yaml"
ctl=$fleet/etc/fleetctl
cat > "$work/rolloutbot.yaml" <<EOF
state_dir: state
log: {level: warn}
inventory: {source: file, file: hosts.yaml}
ssh: {user: fleet, key_file: $fleet/etc/client_ed25519, known_hosts: $fleet/known_hosts-$n, command_timeout: 60s,
  host_dir: "$fleet/hosts/{address}.rolloutbot"}
rollout: {stages: [10, 50, 100], concurrency: $c, pause: 0s, threshold: 30}
recipe:
  version: "$ctl version"
  update: "$ctl update {version}"
  health: "$ctl health"
  rollback: "$ctl rollback {version}"
EOF

# The fleet's hosts share the fleet user's home: each keeps rolloutbot's
# lock and fence beside its own version file (host_dir), as separate machines would.
reset_hosts() { rm -rf "$fleet"/hosts/127.0.1[0-9].*; rm -rf "$work/state"; }

run_floor() {
  reset_hosts
  (cd "$shared/floor" && go run . -sshd "$fleet" -n "$n" -c "$c") | sed -n 's/.*wall=\([0-9.]*\)s.*/\1/p'
}

run_rolloutbot() {
  reset_hosts
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/rss" "$bin" rollout start v2 --config "$work/rolloutbot.yaml" > "$work/out" 2>&1 ||
    { cat "$work/out" >&2; exit 1; }
  t1=$(date +%s.%N)
  grep -q "completed" "$work/out" || { cat "$work/out" >&2; exit 1; }
  echo "$t1 - $t0" | bc
}

# Interleaved, twice each, so drift on a shared machine hits all alike.
f1=$(run_floor); r1=$(run_rolloutbot); rss1=$(cat "$work/rss")
f2=$(run_floor); r2=$(run_rolloutbot); rss2=$(cat "$work/rss")
floor=$(echo "scale=3; ($f1 + $f2) / 2" | bc)
rb=$(echo "scale=3; ($r1 + $r2) / 2" | bc)
rss=$(( (rss1 > rss2 ? rss1 : rss2) / 1024 ))

echo "real OpenSSH fleet, $n hosts, concurrency $c (wall seconds; ratio to the x/crypto/ssh floor)"
printf '  %-11s %7.2f s  %5.2fx\n' floor "$floor" 1
printf '  %-11s %7.2f s  %5.2fx   (runs %.2f, %.2f; peak RSS %d MB)\n' rolloutbot "$rb" "$(echo "$rb / $floor" | bc -l)" "$r1" "$r2" "$rss"
printf '  %-11s %7.2f s  %5.2fx\n' raw-ssh "$raw" "$(echo "$raw / $floor" | bc -l)"
printf '  %-11s %7.2f s  %5.2fx\n' ansible "$ansible" "$(echo "$ansible / $floor" | bc -l)"
printf '  rolloutbot vs raw-ssh %.2fx, vs ansible %.2fx\n' "$(echo "$rb / $raw" | bc -l)" "$(echo "$rb / $ansible" | bc -l)"
