#!/usr/bin/env bash
# Routing lag after an online membership change, on the demo federation
# (`hotline demo`: 8 nodes in one process, TLS, redb with fsync): node 2
# (上海) is added as a learner of 嘉定's group (310114), then removed, ROUNDS
# times; each time, the ms from the command's answer until every node routes
# with a directory that shows the change (`hotline group directory --json`,
# polled every 50 ms). Each change waits a random 0–2 s first, so it falls
# anywhere in the nodes' 2 s directory rounds (which all started together).
# Several binaries run in alternation (A/B of builds).
#   bench/routing-lag.sh [BINARY…]    (default: a release build of this tree)
# Knobs (env): SETTLE=15 (s after launch) ROUNDS=5. Port base 8400.
set -euo pipefail
cd "$(dirname "$0")/.."
SETTLE=${SETTLE:-15}
ROUNDS=${ROUNDS:-5}
[[ $SETTLE =~ ^[0-9]{1,3}$ && $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "SETTLE 0-999 s, ROUNDS 1-99" >&2; exit 2; }
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || { cargo build --release --quiet; BINS=("$PWD/target/release/hotline"); }
D=$(mktemp -d /tmp/hotline-lag.XXXX)
P=
stop() {
  if [[ -n $P ]]; then
    kill -TERM "$P" 2>/dev/null || true
    timeout 30 tail --pid="$P" -f /dev/null || kill -KILL "$P" 2>/dev/null || true
  fi
  P=
}
trap 'stop; rm -rf "$D"' EXIT
now_ms() { date +%s%3N; }
phase() { sleep "$(printf '0%d.%03d' $((RANDOM % 2000 / 1000)) $((RANDOM % 1000)))"; }
# wait_routes BIN WANT: until every node routes with a version whose 嘉定
# group has (WANT=1) or has not (WANT=0) node 2 among its learners; prints
# the ms waited (at most 30 s, then fails).
wait_routes() {
  local b=$1 want=$2 t0 out
  t0=$(now_ms)
  while (($(now_ms) - t0 < 30000)); do
    out=$("$b" group directory --config "$D/demo/client.toml" --json 2>/dev/null || true)
    if [[ -n $out ]] && jq -e --argjson want "$want" '
        (.groups[] | select(.region == "310114") | (.learners | index(2)) != null) == ($want == 1)
        and all(.nodes[]; .routes_with == .has and .has > 0)
        and ([.nodes[].has] | unique | length) == 1' <<<"$out" >/dev/null; then
      echo $(($(now_ms) - t0))
      return 0
    fi
    sleep 0.05
  done
  echo "routing did not converge within 30 s" >&2
  return 1
}
for b in "${BINS[@]}"; do
  rm -rf "${D:?}"/*
  HOTLINE_LOG=warn "$b" demo --port-base 8400 --dir "$D/demo" >"$D/demo.log" 2>&1 &
  P=$!
  sleep "$SETTLE"
  kill -0 "$P" || { echo "demo of $b exited" >&2; exit 1; }
  adds=() removes=()
  for r in $(seq 1 "$ROUNDS"); do
    phase
    "$b" group add-learner --config "$D/demo/client.toml" --region 310114 --node 2 >/dev/null
    adds+=("$(wait_routes "$b" 1)")
    phase
    "$b" group remove --config "$D/demo/client.toml" --region 310114 --node 2 >/dev/null
    removes+=("$(wait_routes "$b" 0)")
  done
  echo "$b: add-learner → every node routes with it: ${adds[*]} ms; remove: ${removes[*]} ms"
  stop
done
