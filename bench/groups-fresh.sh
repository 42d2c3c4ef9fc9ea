#!/usr/bin/env bash
# One-at-a-time companion of `bench/federation.sh groups`: a fresh 3-node
# cluster per run (release build, mutual TLS, fsync), 128 closed-loop clients
# (CLIENTS=N for another count) for 10 s spread over the groups, then
# throughput, p99 and the node CPU per accept summed over the three nodes
# (from /proc/PID/stat) and the bytes written to disk per accept and node
# (from /proc/PID/io).
#   bench/groups-fresh.sh GROUPS ROUNDS [spread|balanced|two|one] [BINARY…]
# `spread` leaves the leaders where the elections put them; `balanced` then
# evens them out (`hotline group balance-leaders`: 22/21/21 of 64); `two`
# gives node 3 a 4x election timeout so nodes 1 and 2 lead every group (as
# after node 3 comes back from a stop); `one` gives nodes 2 and 3 a 4x
# election timeout so node 1 leads every group.
# Several binaries are run in alternation (A/B of two builds).
# PERF=PREFIX records `perf record -g` of the whole machine for 5 s from 3 s
# into each measurement, to PREFIX-GROUPS-ROUND-BINARYNO.data (linux-perf).
# METRICS=1 also prints each node's raft-loop counters after the run
# (proposals, WAL syncs, checkpoints, raft messages sent, loop iterations).
# THREADS=1 also prints the nodes' CPU per accept by kind of thread (raft
# loops, checkpoint threads, tokio workers), summed over the three nodes.
# PER_NODE=1 also prints each node's CPU per accept (node 1 leads every group
# with `one`): what one node of a deployment with a machine per node spends.
# WARMUP=DURATION (e.g. 10s) first runs the same clients unmeasured for that
# long, so that the figures are the steady state's and not a fresh cluster's
# fill of its log windows and tables (it made no difference to 64 groups
# against 1: BENCHMARKS, 2 Dec 15:17 UTC).
# CPU_CAP=FRACTION (e.g. 0.5) caps each node at that many CPUs (its own cgroup v1
# `cpu` group, quota per 20 ms period; root needed): each node is bound by its own
# CPU, as on a machine of its own, and not by the two cores all three share.
# Ports 9321-9323 (+10000 metrics). Every node started here is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
G=${1:?groups}
R=${2:?rounds}
LEADERS=${3:-spread}
CLIENTS=${CLIENTS:-128}
shift $(($# < 3 ? $# : 3))
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || { cargo build --release --quiet; BINS=("$PWD/target/release/hotline"); }
[[ $G =~ ^[0-9]{1,4}$ && $R =~ ^[1-9][0-9]?$ ]] || { echo "GROUPS 1-9999, ROUNDS 1-99" >&2; exit 2; }
[[ $CLIENTS =~ ^[1-9][0-9]{0,3}$ ]] || { echo "CLIENTS 1-9999" >&2; exit 2; }
WARMUP=${WARMUP:-}
[[ -z $WARMUP || $WARMUP =~ ^[1-9][0-9]{0,2}s$ ]] || { echo "WARMUP: 1s-999s" >&2; exit 2; }
CPU_CAP=${CPU_CAP:-}
[[ -z $CPU_CAP || $CPU_CAP =~ ^(0?\.[1-9][0-9]?|[1-9](\.[0-9]{1,2})?)$ ]] || { echo "CPU_CAP: 0.1 to 9.99 CPUs per node" >&2; exit 2; }
[[ -z $CPU_CAP || -w /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]] || {
  echo "CPU_CAP needs root and cgroup v1's cpu controller at /sys/fs/cgroup/cpu" >&2
  exit 2
}
CG=/sys/fs/cgroup/cpu/hotline-bench
case $LEADERS in spread | balanced | two | one) ;; *) echo "leaders: spread, balanced, two or one" >&2; exit 2 ;; esac
D=$(mktemp -d /tmp/hotline-groups.XXXX)
PIDS=()
# shellcheck source=bench/lib.sh
. bench/lib.sh
stop() {
  stop_pids "${PIDS[@]}"
  PIDS=()
}
uncap() { for i in 1 2 3; do if [[ -d $CG-$i ]]; then rmdir "$CG-$i" || echo "cgroup $CG-$i left behind" >&2; fi; done; }
# cap PID NODE: the node's process (all its threads, and any it starts) in a cgroup
# of CPU_CAP CPUs.
cap() {
  [[ -d $CG-$2 ]] || mkdir "$CG-$2"
  echo 20000 >"$CG-$2/cpu.cfs_period_us"
  echo "$(echo "$CPU_CAP * 20000 / 1" | bc)" >"$CG-$2/cpu.cfs_quota_us"
  echo "$1" >"$CG-$2/cgroup.procs"
}
trap 'stop; uncap; rm -rf "$D"' EXIT
cpu() { echo "$(node_ticks "${PIDS[@]}") / 100" | bc -l; }
# Groups led per node, once every group has a leader all its replicas know.
leaders() { "$H" bench leaders --config "$D/client.toml" --timeout 60s --json | jq -c .leaders_per_node; }
# "KIND TICKS" per kind of thread of the nodes (the name without its node number).
thread_ticks() {
  for p in "${PIDS[@]}"; do
    for t in /proc/"$p"/task/*; do
      # comm may hold spaces: the fields after ") " start with the state.
      echo "$(sed 's/-[0-9]*$//' "$t/comm") $(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
    done 2>/dev/null
  done | awk '{k=$1; for (i = 2; i < NF; i++) k = k "_" $i; s[k] += $NF} END {for (k in s) print k, s[k]}' | sort
}
# Bytes the nodes caused to be written to disk so far (WAL and checkpoints), summed.
disk() { for p in "${PIDS[@]}"; do awk '/^write_bytes/ {print $2}' "/proc/$p/io"; done | awk '{s+=$1} END {print s+0}'; }
for r in $(seq 1 "$R"); do
  for b in "${!BINS[@]}"; do
    H=${BINS[$b]}
    rm -rf "${D:?}"/*
    "$H" bench topology --nodes 3 --groups "$G" --provinces 31,32 --port-base 9320 --out "$D/topology-in.toml" >/dev/null
    "$H" cluster init --topology "$D/topology-in.toml" --dir "$D" --port-base 9320 >/dev/null
    if [[ $LEADERS == one ]]; then sed -i 's/^election_ticks = .*/election_ticks = 40/' "$D/node-2.toml" "$D/node-3.toml"; fi
    if [[ $LEADERS == two ]]; then sed -i 's/^election_ticks = .*/election_ticks = 40/' "$D/node-3.toml"; fi
    for i in 1 2 3; do
      HOTLINE_LOG=warn "$H" node --config "$D/node-$i.toml" >"$D/node-$i.log" 2>&1 &
      PIDS+=($!)
      if [[ -n $CPU_CAP ]]; then cap "$!" "$i"; fi
    done
    leaders=$(leaders)
    if [[ $LEADERS == balanced ]]; then
      "$H" group balance-leaders --config "$D/client.toml" --json >"$D/balance.json" ||
        echo "balance-leaders: $(jq -c '{failed, after}' "$D/balance.json")" >&2
      leaders=$(leaders)
    fi
    if [[ -n $WARMUP ]]; then
      "$H" bench accept --config "$D/client.toml" --all-groups --clients "$CLIENTS" --duration "$WARMUP" --size 1024 --json >/dev/null
    fi
    before=$(cpu)
    per_node_before=$(for p in "${PIDS[@]}"; do node_ticks "$p"; done)
    threads_before=$(thread_ticks)
    written=$(disk)
    PERF_PID=
    if [[ -n ${PERF:-} ]]; then
      (sleep 3 && record_machine "$PERF-$G-$r-$((b + 1)).data" 5) &
      PERF_PID=$!
    fi
    out=$("$H" bench accept --config "$D/client.toml" --all-groups --clients "$CLIENTS" --duration 10s --size 1024 --json)
    after=$(cpu)
    written=$(($(disk) - written))
    jq -r --arg b "$H" --arg g "$G" --arg c "$CLIENTS" --arg l "$leaders" --argjson cpu "$(echo "$after - $before" | bc -l)" --argjson w "$written" \
      '"\($b) groups \($g) clients \($c) leaders \($l): \(.throughput_per_s|round)/s p99 \(.p99_ms) ms, node CPU per accept \($cpu / .ok * 1e6 | round) µs, written per accept \($w / .ok / 3 / 1024 * 100 | round / 100) KiB per node"' <<<"$out"
    if [[ ${PER_NODE:-0} == 1 ]]; then
      ok=$(jq .ok <<<"$out")
      paste <(echo "$per_node_before") <(for p in "${PIDS[@]}"; do node_ticks "$p"; done) |
        awk -v ok="$ok" '{printf "  node %d %.1f µs per accept\n", NR, ($2 - $1) / 100 / ok * 1e6}'
    fi
    if [[ ${THREADS:-0} == 1 ]]; then
      ok=$(jq .ok <<<"$out")
      join <(echo "$threads_before") <(thread_ticks) |
        awk -v ok="$ok" '{d = $3 - $2; if (d > 0) printf "  %s %.1f µs per accept\n", $1, d / 100 / ok * 1e6}'
    fi
    if [[ ${METRICS:-0} == 1 ]]; then
      for i in 1 2 3; do
        curl -s "http://127.0.0.1:$((10000 + 9320 + i))/metrics" |
          grep -E "^hotline_(proposals_total|storage_commits_total|raft_messages_total|raft_loop_iterations_total)" |
          sed "s/^/  node $i /"
      done
    fi
    if [[ -n $PERF_PID ]]; then wait "$PERF_PID" || true; fi
    stop
  done
done
