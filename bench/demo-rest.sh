#!/usr/bin/env bash
# At-rest cost of the demo federation: `hotline demo` (8 nodes in one
# process, TLS, redb with fsync) is launched, left SETTLE s (the directory's
# seed and reports happen in the first seconds), then its CPU (from
# /proc/PID/stat, in % of one core) and RSS are read over SAMPLE s. Several
# binaries are measured in alternation, ROUNDS times (A/B of two builds).
#   bench/demo-rest.sh [BINARY…]      (default: a release build of this tree)
# Knobs (env): SETTLE=30 SAMPLE=30 ROUNDS=2. Port base 8300.
set -euo pipefail
cd "$(dirname "$0")/.."
SETTLE=${SETTLE:-30}
SAMPLE=${SAMPLE:-30}
ROUNDS=${ROUNDS:-2}
[[ $SETTLE =~ ^[0-9]{1,3}$ && $SAMPLE =~ ^[1-9][0-9]{0,2}$ ]] || { echo "SETTLE 0-999, SAMPLE 1-999 (s)" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9]$ ]] || { echo "ROUNDS 1-9" >&2; exit 2; }
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || { cargo build --release --quiet; BINS=("$PWD/target/release/hotline"); }
D=$(mktemp -d /tmp/hotline-rest.XXXX)
P=
stop() {
  if [[ -n $P ]]; then
    kill -TERM "$P" 2>/dev/null || true
    timeout 30 tail --pid="$P" -f /dev/null || kill -KILL "$P" 2>/dev/null || true
  fi
  P=
}
trap 'stop; rm -rf "$D"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$P/stat"; }
for r in $(seq 1 "$ROUNDS"); do
  for b in "${BINS[@]}"; do
    rm -rf "${D:?}"/*
    HOTLINE_LOG=warn "$b" demo --port-base 8300 --dir "$D/demo" >/dev/null 2>&1 &
    P=$!
    sleep "$SETTLE"
    kill -0 "$P" || { echo "demo of $b exited" >&2; exit 1; }
    a=$(ticks)
    sleep "$SAMPLE"
    z=$(ticks)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$P/status")
    echo "round $r $b: $(echo "($z - $a) / $SAMPLE" | bc -l | xargs printf '%.2f') % of one core, RSS $((rss / 1024)) MiB"
    stop
  done
done
