#!/usr/bin/env bash
# Durable 1 KiB writes: hotline (3 nodes, mTLS, redb fsync) vs etcd (3
# members, Debian etcd-server, fsync on), same machine, same client loop
# (`hotline bench`), one run. Prints one JSON line per measurement, with the
# CPU per operation of the servers and of the client and the machine's idle
# share (bench_with_cpu in bench/lib.sh; DURATION at least 8s).
# Each round starts both systems afresh (empty data directories): a node
# holding the tickets of earlier rounds is slower (BENCHMARKS.md, "Throughput
# falls as the nodes hold more tickets"), so every round compares like with like.
#   [H=BINARY] [CLIENT_COUNTS="1 128"] [CONNECTIONS=8] bench/compare.sh [DURATION] [ROUNDS]
# CONNECTIONS: the gRPC connections the client's loops share, the same for
# both systems.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
ROUNDS=${2:-2}
CONNECTIONS=${CONNECTIONS:-8}
# The CPU window runs from the 3rd to the 8th second of each measurement.
if ! [[ $DUR =~ ^[0-9]+s$ ]] || ((${DUR%s} < 8)); then
  echo "compare.sh: DURATION must be whole seconds, at least 8s (got $DUR)" >&2
  exit 2
fi
WORK=$(mktemp -d /tmp/hotline-compare.XXXX)
# H=/path/to/hotline compares another build (e.g. a saved binary) as is.
if [[ -z "${H:-}" ]]; then
  H=target/release/hotline
  cargo build --release --quiet
fi
# shellcheck source=bench/lib.sh
. bench/lib.sh
NODES=()
cleanup() {
  stop_pids "${NODES[@]}"
  NODES=()
  bench/etcd-cluster.sh stop "$WORK/etcd" >/dev/null 2>&1 || true
}
trap cleanup EXIT

for round in $(seq 1 "$ROUNDS"); do
  # The previous round's nodes release their ports and files first
  # (etcd-cluster.sh start stops and wipes its own members).
  stop_pids "${NODES[@]}"
  NODES=()
  rm -rf "$WORK/hotline"
  "$H" cluster init --dir "$WORK/hotline" --nodes 3 --port-base 7900 >/dev/null
  for i in 1 2 3; do
    HOTLINE_LOG=warn "$H" node --config "$WORK/hotline/node-$i.toml" 2>"$WORK/node-$i.log" &
    NODES+=($!)
  done
  bench/etcd-cluster.sh start "$WORK/etcd" >/dev/null
  ETCD_LEADER=$(bench/etcd-cluster.sh leader "$WORK/etcd")
  sleep 2
  for clients in ${CLIENT_COUNTS:-1 128}; do
    bench_with_cpu "${NODES[*]}" "$H" bench accept --config "$WORK/hotline/client.toml" \
      --clients "$clients" --connections "$CONNECTIONS" --duration "$DUR" --size 1024 --json
    bench_with_cpu "$(cat "$WORK/etcd/pids")" "$H" bench etcd-put --endpoint "$ETCD_LEADER" \
      --clients "$clients" --connections "$CONNECTIONS" --duration "$DUR" --size 1024 --json
  done
done
