#!/usr/bin/env bash
# Where a 3-node cluster's time goes under durable 1 KiB accepts: a fresh
# cluster (release build, mutual TLS unless INIT_ARGS=--insecure), 3 s of
# warm-up, then CLIENTS closed-loop clients for 10 s; prints the bench's JSON
# line and the three nodes' CPU per accept over 5 s of the run (from
# /proc/PID/stat). PERF=FILE also records `perf record -g` of the whole
# machine over those 5 s (perf from linux-perf). Relative paths in H and PERF
# are taken from the repository's root.
#   [H=BINARY] [CLIENTS=128] [PERF=FILE] [NODE_ENV="VAR=V …"] bench/profile.sh
# Ports 7901-7903 (those of compare.sh: do not run both at once).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${H:-}" ]]; then
  H=target/release/hotline
  cargo build --release --quiet
fi
CLIENTS=${CLIENTS:-128}
W=$(mktemp -d /tmp/hotline-profile.XXXX)
SAMPLER=
cleanup() {
  if [[ -n $SAMPLER ]]; then kill "$SAMPLER" 2>/dev/null || true; fi
  pkill -f " node --config $W/" || true
  rm -rf "$W"
}
trap cleanup EXIT
# shellcheck disable=SC2086 # INIT_ARGS and NODE_ENV are lists of words
"$H" cluster init --dir "$W/c" --nodes 3 --port-base 7900 ${INIT_ARGS:-} >/dev/null
for i in 1 2 3; do
  # shellcheck disable=SC2086
  env ${NODE_ENV:-} HOTLINE_LOG=warn "$H" node --config "$W/c/node-$i.toml" 2>"$W/node-$i.log" &
done
sleep 3
"$H" bench accept --config "$W/c/client.toml" --clients "$CLIENTS" --duration 3s --size 1024 --json >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck disable=SC2046 # one word per pid
ticks() { node_ticks $(pgrep -f " node --config $W/"); }
(
  # The window is timed, not assumed: perf takes a moment to start and to
  # write its file. A failed perf still leaves the CPU figure.
  sleep 2
  t0=$(ticks)
  s0=$(date +%s.%N)
  if [[ -n ${PERF:-} ]]; then
    record_machine "$PERF" 5 || true
  else
    sleep 5
  fi
  echo "$(($(ticks) - t0)) $(echo "$(date +%s.%N) - $s0" | bc -l)" >"$W/window"
) &
SAMPLER=$!
out=$("$H" bench accept --config "$W/c/client.toml" --clients "$CLIENTS" --duration 10s --size 1024 --json)
wait $SAMPLER
SAMPLER=
echo "$out"
read -r t secs <"$W/window"
# Clock ticks are 1/100 s: µs per accept = ticks * 10^4 / (seconds * accepts/s).
jq -r --argjson t "$t" --argjson s "$secs" \
  '"node CPU per accept \($t * 10000 / $s / .throughput_per_s | round) µs (summed over the 3 nodes, \($s * 10 | round / 10) s)"' <<<"$out"
