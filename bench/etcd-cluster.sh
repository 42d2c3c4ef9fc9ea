#!/usr/bin/env bash
# Run a 3-member etcd cluster on loopback, used as the baseline that hotline is benchmarked against. Usage:
#   etcd-cluster.sh start DIR [PORT_BASE]  # wipe DIR's cluster state, start 3 members, wait until healthy;
#                                          # last stdout line = client endpoints "127.0.0.1:P1,127.0.0.1:P2,..."
#   etcd-cluster.sh stop DIR               # kill the members listed in DIR/pids and wait for them to exit
#   etcd-cluster.sh leader DIR             # print the leader's client endpoint (host:port)
# Ports (PORT_BASE default 12379): clients PORT_BASE+1..3 = 12380-12382, peers PORT_BASE+101..103 =
# 12480-12482, clear of stock etcd's 2379/2380. Plain HTTP, otherwise etcd defaults (snapshot-count,
# quota, fsync ON). Never add --unsafe-no-fsync: the comparison is only fair if etcd pays for durable
# WAL writes like hotline does. Logs: DIR/mN.log. Stdout = endpoints only; everything else -> stderr.
set -euo pipefail

die() { echo "etcd-cluster: $*" >&2; exit 1; }

# Debian bookworm packages etcd 3.4.23 (etcd-server has /usr/bin/etcd, etcd-client has etcdctl).
ensure_etcd() {
  if [[ -x /usr/bin/etcd && -x /usr/bin/etcdctl ]]; then return 0; fi
  local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Use-Pty=0: no dpkg progress bar. The postinst's service start is refused without systemd; harmless.
  local pkgs=(-o Dpkg::Use-Pty=0 etcd-server etcd-client)
  # Try without `apt-get update` first: it is slow and usually the lists are already fresh enough.
  if ! $sudo apt-get install -y -qq "${pkgs[@]}" >&2; then
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq "${pkgs[@]}" >&2
  fi
  [[ -x /usr/bin/etcd ]] || die "etcd install failed"
}

# etcd 3.4's etcdctl already defaults to the v3 API; set it anyway so an ETCDCTL_API=2 in the env can't break us.
ctl() { ETCDCTL_API=3 etcdctl --dial-timeout=2s --command-timeout=3s "$@"; }

# Leader = the row whose IS LEADER column (5th field of `-w simple`) is "true".
leader_of() { ctl --endpoints="$1" endpoint status -w simple 2>/dev/null | awk -F', ' '$5=="true"{print $1; exit}'; }

# Alive AND still etcd: a stale DIR/pids (e.g. after a reboot) must never get an unrelated process killed.
alive() { [[ $(cat "/proc/$1/comm" 2>/dev/null) == etcd ]]; }

# SIGTERM pids, poll until gone (not our children, so no `wait`); SIGKILL after 10 s so stop never hangs.
# `if` rather than `alive && kill`: a loop ending in a false && list would trip set -e.
term_wait() {
  local pid any
  for pid in "$@"; do if alive "$pid"; then kill -TERM "$pid"; fi; done
  for _ in $(seq 100); do
    any=0; for pid in "$@"; do if alive "$pid"; then any=1; fi; done
    if [[ $any -eq 0 ]]; then return 0; fi; sleep 0.1
  done
  for pid in "$@"; do if alive "$pid"; then echo "etcd-cluster: pid $pid ignored SIGTERM, killing" >&2; kill -KILL "$pid"; fi; done
}

cmd_stop() {
  local dir=$1 lead="" lpid="" others=() eps=() i=0 pid
  [[ -f $dir/pids ]] || return 0
  # Followers first, leader last: a SIGTERM'd 3.4 leader tries to hand leadership to a peer; with all
  # peers stopping at once that times out after 7 s (stop took ~9 s). With followers gone the leader
  # skips it; stop takes ~3.5 s, etcd's own graceful shutdown.
  if [[ -f $dir/endpoints ]]; then lead=$(leader_of "$(cat "$dir/endpoints")") || true; fi
  IFS=, read -ra eps <<<"$(cat "$dir/endpoints" 2>/dev/null || true)"
  while read -r pid; do
    if [[ -n $lead && ${eps[i]:-} == "$lead" ]]; then lpid=$pid; else others+=("$pid"); fi; i=$((i + 1))
  done <"$dir/pids"
  [[ ${#others[@]} -eq 0 ]] || term_wait "${others[@]}"
  [[ -z $lpid ]] || term_wait "$lpid"
  rm -f "$dir/pids"
}

cmd_start() {
  local dir=$1 base=${2:-12379} i
  [[ $base =~ ^[0-9]+$ ]] || die "PORT_BASE must be a number"
  ensure_etcd; mkdir -p "$dir"
  # Stop any previous cluster on DIR, then wipe only what this script owns (not `rm -rf DIR`: a typo'd
  # DIR would be disastrous). Fresh data dirs matter: members with an existing WAL ignore --initial-*.
  cmd_stop "$dir"
  rm -rf "$dir"/m1 "$dir"/m2 "$dir"/m3 "$dir"/m?.log "$dir"/endpoints
  # Refuse busy ports: else our members die on bind while the health check below is answered by
  # whatever already listens there (seen in testing with a second cluster on the same PORT_BASE).
  for i in 1 2 3 101 102 103; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$((base + i))") 2>/dev/null; then die "port $((base + i)) already in use"; fi
  done
  local cluster="" eps=() urls="" cport pport
  for i in 1 2 3; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((base + 100 + i))"; done
  for i in 1 2 3; do
    cport=$((base + i)) pport=$((base + 100 + i)); eps+=("127.0.0.1:$cport")
    # nohup + all fds redirected: members must outlive this script and must not hold the caller's
    # stdout open (else `EPS=$(etcd-cluster.sh start ...)` would block until the cluster dies).
    nohup etcd --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
      --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "hotline-bench-$base" \
      </dev/null >"$dir/m$i.log" 2>&1 &
    echo $! >>"$dir/pids"
  done
  urls=$(IFS=,; echo "${eps[*]}"); echo "$urls" >"$dir/endpoints"
  # Bounded wait: `endpoint health` exits non-zero until every member has committed a proposal.
  # Members are checked first so a crashed one fails fast (with its log) instead of after 30 s.
  local deadline=$((SECONDS + 30)) pid
  while :; do
    for pid in $(cat "$dir/pids"); do
      alive "$pid" || { tail -n 5 "$dir"/m?.log >&2; cmd_stop "$dir"; die "member pid $pid exited early; logs in $dir"; }
    done
    if ctl --endpoints="$urls" endpoint health >/dev/null 2>&1; then break; fi
    (( SECONDS < deadline )) || { tail -n 5 "$dir"/m?.log >&2; cmd_stop "$dir"; die "not healthy after 30 s; logs in $dir"; }
    sleep 0.3
  done
  ctl --endpoints="$urls" endpoint health >&2
  ctl --endpoints="$urls" endpoint status -w table >&2
  echo "leader: $(leader_of "$urls")" >&2
  echo "$urls"
}

cmd_leader() {
  local dir=$1 l
  [[ -f $dir/endpoints ]] || die "no cluster in $dir (run start first)"
  l=$(leader_of "$(cat "$dir/endpoints")") || true  # keep going so the die below explains
  [[ -n $l ]] || die "no leader found (cluster down or electing)"
  echo "$l"
}

case "${1:-}" in
  start)  [[ $# -ge 2 ]] || die "usage: $0 start DIR [PORT_BASE]"; cmd_start "$2" "${3:-}" ;;
  stop)   [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  leader) [[ $# -eq 2 ]] || die "usage: $0 leader DIR"; cmd_leader "$2" ;;
  *) die "usage: $0 {start DIR [PORT_BASE] | stop DIR | leader DIR}" ;;
esac
