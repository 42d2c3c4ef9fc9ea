#!/usr/bin/env bash
# Federation benchmarks (BENCHMARKS.md, "Federation"), release build, every node
# its own `hotline node` process, mutual TLS, redb with fsync:
#   1. transfer: cross-province transfers on the demo federation (8 nodes):
#      tickets accepted at 嘉定 310114 about 太仓 浏河镇 320585102, accept → owned
#      by 太仓's group; 1 client (latency), then 32 and 128 (throughput).
#   2. groups:   3 nodes voters of 64 district groups vs the same 3 nodes with
#      1 group, closed-loop accepts spread over the groups (both clusters run
#      side by side, measured in alternation, ROUNDS rounds). LEADERS=spread
#      (default) lets elections spread the leaders over the nodes; LEADERS=one
#      gives nodes 2 and 3 a 4x longer election timeout, so node 1 wins every
#      election and leads all 64 groups as it leads the single one: the
#      difference is then per-group work alone, not the traffic of three
#      nodes that each lead some groups and follow the others.
#   3. idle:     3 nodes voters of 1,000 district groups: launch → every group
#      led, then CPU and memory at rest.
# Prints "label<TAB>one JSON document" per measurement, then a summary.
#   bench/federation.sh [all|transfer|groups|idle]
# Knobs (env): LEADERS=spread LOW_DUR=20s (per launch) LAUNCHES=3 TPUT_DUR=30s ACCEPT_DUR=10s ROUNDS=2 IDLE_GROUPS=1000
#              IDLE_NATIONAL=0 (1 adds a national group: the directory syncs at rest)
#              SETTLE=10 SAMPLE=20s KEEP=0 (1 keeps the work directory)
# Ports: 9101-9108 (demo), 9301-9303 (64 groups), 9321-9323 (1 group),
# 9401-9403 (idle groups). Bounded: every wait has a timeout; every node started
# here is stopped on exit (by pid).
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
LOW_DUR=${LOW_DUR:-20s}
LAUNCHES=${LAUNCHES:-3}
TPUT_DUR=${TPUT_DUR:-30s}
ACCEPT_DUR=${ACCEPT_DUR:-10s}
ROUNDS=${ROUNDS:-2}
IDLE_GROUPS=${IDLE_GROUPS:-1000}
IDLE_NATIONAL=${IDLE_NATIONAL:-0}
SETTLE=${SETTLE:-10}
SAMPLE=${SAMPLE:-20s}
LEADERS=${LEADERS:-spread}
case $WHAT in all | transfer | groups | idle) ;; *)
  echo "usage: $0 [all|transfer|groups|idle]" >&2
  exit 2
  ;;
esac
case $LEADERS in spread | one) ;; *) echo "LEADERS: spread or one" >&2; exit 2 ;; esac
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "ROUNDS: 1 to 99" >&2; exit 2; }
[[ $LAUNCHES =~ ^[1-9]$ ]] || { echo "LAUNCHES: 1 to 9" >&2; exit 2; }
[[ $IDLE_NATIONAL =~ ^[01]$ ]] || { echo "IDLE_NATIONAL: 0 or 1" >&2; exit 2; }
[[ $SETTLE =~ ^[0-9]{1,3}$ ]] || { echo "SETTLE: seconds, 0 to 999" >&2; exit 2; }

H=$PWD/target/release/hotline
cargo build --release --quiet
WORK=$(mktemp -d /tmp/hotline-federation.XXXX)
RESULTS=$WORK/results.tsv
PIDS=()

stop_nodes() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local any=0
    for pid in "${PIDS[@]}"; do if kill -0 "$pid" 2>/dev/null; then any=1; fi; done
    [[ $any -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_nodes
  if [[ ${KEEP:-0} == 1 ]]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# start DIR N: node-1..N of DIR (a `cluster init` directory), logs in DIR.
start() {
  local dir=$1 n=$2 i
  for i in $(seq 1 "$n"); do
    HOTLINE_LOG=warn "$H" node --config "$dir/node-$i.toml" >"$dir/node-$i.log" 2>&1 &
    PIDS+=($!)
    echo $! >>"$dir/pids"
  done
}
# emit LABEL COMMAND…: run a bench that prints one JSON document; keep it.
emit() {
  local label=$1 out
  shift
  out=$("$@")
  printf '%s\t%s\n' "$label" "$out" | tee -a "$RESULTS"
}
machine() {
  printf 'machine\t{"date":"%s","host":"%s","cpus":%s,"loadavg":"%s","git":"%s"}\n' \
    "$(date -u +%FT%TZ)" "$(uname -srm)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +dirty)" |
    tee -a "$RESULTS"
}

machine

if [[ $WHAT == all || $WHAT == transfer ]]; then
  D=$WORK/demo
  "$H" cluster init --topology federation/topologies/demo.toml --dir "$D" --port-base 9100 >/dev/null
  # Each group's forwarder runs every 200 ms from its node's start, so the
  # second hop's wait depends on how the two forwarders' phases fall: each
  # launch staggers the nodes' starts by a random 0-200 ms, and the latency
  # figures pool LAUNCHES launches.
  for launch in $(seq 1 "$LAUNCHES"); do
    for i in $(seq 1 8); do
      HOTLINE_LOG=warn "$H" node --config "$D/node-$i.toml" >>"$D/node-$i.log" 2>&1 &
      PIDS+=($!)
      sleep "0.$(printf '%03d' $((RANDOM % 200)))"
    done
    emit "transfer.l$launch.leaders" "$H" bench leaders --config "$D/client.toml" --timeout 120s --json
    sleep 2
    # Latency: one transfer at a time, a random pause below 200 ms between two
    # (not measured) so the loop does not lock onto the forwarders' cadence.
    emit "transfer.l$launch.c1" "$H" bench transfer --config "$D/client.toml" --from 310114 \
      --location 320585102 --clients 1 --duration "$LOW_DUR" --poll 5ms --jitter 200ms --receipt \
      --samples "$WORK/transfer-c1.samples" --json
    if [[ $launch -lt $LAUNCHES ]]; then stop_nodes; fi
  done
  # Pooled over the launches (nearest rank): accept → owned, client and server clocks.
  for col in 1 2; do
    sort -n -k"$col,$col" "$WORK/transfer-c1.samples" | awk -v c="$col" -v name="$([[ $col == 1 ]] && echo client || echo server)" \
      '{ v[NR] = $c } END { p50 = v[int(NR * 0.50 + 0.999999)]; p99 = v[int(NR * 0.99 + 0.999999)];
         printf "transfer.c1.pooled.%s\t{\"n\":%d,\"p50_ms\":%s,\"p99_ms\":%s,\"max_ms\":%s}\n", name, NR, p50, p99, v[NR] }' |
      tee -a "$RESULTS"
  done
  # Throughput: 32, then 128 transfers in flight, no pause.
  emit "transfer.c32" "$H" bench transfer --config "$D/client.toml" --from 310114 \
    --location 320585102 --clients 32 --duration "$TPUT_DUR" --poll 20ms --jitter 0s --json
  emit "transfer.c128" "$H" bench transfer --config "$D/client.toml" --from 310114 \
    --location 320585102 --clients 128 --duration "$TPUT_DUR" --poll 50ms --jitter 0s --json
  stop_nodes
fi

if [[ $WHAT == all || $WHAT == groups ]]; then
  G64=$WORK/g64 G1=$WORK/g1
  mkdir -p "$G64" "$G1"
  "$H" bench topology --nodes 3 --groups 64 --provinces 31,32 --port-base 9300 --out "$G64/topology-in.toml" >&2
  "$H" bench topology --nodes 3 --groups 1 --provinces 31,32 --port-base 9320 --out "$G1/topology-in.toml" >&2
  "$H" cluster init --topology "$G64/topology-in.toml" --dir "$G64" --port-base 9300 >/dev/null
  "$H" cluster init --topology "$G1/topology-in.toml" --dir "$G1" --port-base 9320 >/dev/null
  if [[ $LEADERS == one ]]; then
    for d in "$G64" "$G1"; do
      sed -i 's/^election_ticks = .*/election_ticks = 40/' "$d/node-2.toml" "$d/node-3.toml"
    done
  fi
  start "$G64" 3
  start "$G1" 3
  emit "groups.64.leaders" "$H" bench leaders --config "$G64/client.toml" --timeout 120s --json
  emit "groups.1.leaders" "$H" bench leaders --config "$G1/client.toml" --timeout 120s --json
  sleep 2
  for round in $(seq 1 "$ROUNDS"); do
    for clients in 1 128; do
      emit "groups.64.c$clients.r$round" "$H" bench accept --config "$G64/client.toml" --all-groups \
        --clients "$clients" --duration "$ACCEPT_DUR" --size 1024 --json
      emit "groups.1.c$clients.r$round" "$H" bench accept --config "$G1/client.toml" --all-groups \
        --clients "$clients" --duration "$ACCEPT_DUR" --size 1024 --json
    done
  done
  # At rest, for comparison with 1,000 groups (both clusters idle).
  sleep "$SETTLE"
  emit "groups.64.idle" "$H" bench idle --pid "$(paste -sd, "$G64/pids")" --duration "$SAMPLE" --json
  emit "groups.1.idle" "$H" bench idle --pid "$(paste -sd, "$G1/pids")" --duration "$SAMPLE" --json
  stop_nodes
fi

if [[ $WHAT == all || $WHAT == idle ]]; then
  I=$WORK/idle
  mkdir -p "$I"
  "$H" bench topology --nodes 3 --groups "$IDLE_GROUPS" --port-base 9400 --out "$I/topology-in.toml" >&2
  if [[ $IDLE_NATIONAL == 1 ]]; then
    # A national group on the same nodes: the replicated directory is then
    # read and checked every 2 s at rest (dirsync), as in a real federation.
    printf '\n[[group]]\nregion = ""\nvoters = [1, 2, 3]\nlearners = []\n' >>"$I/topology-in.toml"
  fi
  "$H" cluster init --topology "$I/topology-in.toml" --dir "$I" --port-base 9400 >/dev/null
  t0=$(date +%s%N)
  start "$I" 3
  emit "idle.$IDLE_GROUPS.leaders" "$H" bench leaders --config "$I/client.toml" --timeout 600s --json
  printf 'idle.%s.launch_to_all_led\t{"seconds":%s}\n' "$IDLE_GROUPS" \
    "$(echo "scale=2; ($(date +%s%N) - $t0) / 1000000000" | bc)" | tee -a "$RESULTS"
  sleep "$SETTLE"
  emit "idle.$IDLE_GROUPS.rest" "$H" bench idle --pid "$(paste -sd, "$I/pids")" --duration "$SAMPLE" --json
  printf 'idle.%s.disk\t{"data_mib":%s}\n' "$IDLE_GROUPS" \
    "$(du -sm "$I/data" | cut -f1)" | tee -a "$RESULTS"
  stop_nodes
fi

machine

if command -v jq >/dev/null; then
  echo
  echo "summary (ms; throughput per second; CPU in % of one core, summed over the cluster's nodes)"
  while IFS=$'\t' read -r label doc; do
    case $label in
    transfer.*.leaders) ;;
    transfer.c1.pooled.*) jq -r --arg l "$label" '"\($l): \(.n) transfers, accept→owned p50 \(.p50_ms) p99 \(.p99_ms) max \(.max_ms)"' <<<"$doc" ;;
    transfer.*c*) jq -r --arg l "$label" '"\($l): \(.clients) clients, delivered \(.delivered) in \(.duration_s|floor) s = \(.delivered_per_s*10|round/10)/s; accept→owned p50 \(.owned_client.p50_ms) p99 \(.owned_client.p99_ms) (server clocks p50 \(.owned_server.p50_ms) p99 \(.owned_server.p99_ms)); accept call p50 \(.accept_call.p50_ms)" + (if .receipt_client.n > 0 then "; receipt at origin p50 \(.receipt_client.p50_ms) p99 \(.receipt_client.p99_ms)" else "" end)' <<<"$doc" ;;
    groups.*.c*) jq -r --arg l "$label" '"\($l): \(.regions) groups, \(.clients) clients: \(.throughput_per_s|round)/s, p50 \(.p50_ms) p99 \(.p99_ms), errors \(.errors)"' <<<"$doc" ;;
    *.leaders) jq -r --arg l "$label" '"\($l): \(.groups) groups led after \(.all_led_s*100|round/100) s, leaders per node \(.leaders_per_node|tostring)"' <<<"$doc" ;;
    *.idle | *.rest) jq -r --arg l "$label" '"\($l): CPU \(.total_cpu_pct_of_one_core*10|round/10) %, RSS \(.total_rss_mib|round) MiB; per node CPU \([.processes[].cpu_pct_of_one_core*10|round/10]|tostring) %, RSS \([.processes[].rss_mib|round]|tostring) MiB, syscall write KiB/s \([.processes[].syscall_write_kib_s|round]|tostring)"' <<<"$doc" ;;
    *) printf '%s: %s\n' "$label" "$doc" ;;
    esac
  done <"$RESULTS"
fi
