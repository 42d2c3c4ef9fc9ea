# Helpers shared by the bench scripts (sourced, not run).

# node_ticks PID…: CPU clock ticks (1/100 s, user + system) the processes used so far.
node_ticks() { for p in "$@"; do awk '{print $14+$15}' "/proc/$p/stat"; done | awk '{s+=$1} END {print s+0}'; }

# record_machine FILE SECONDS: `perf record -g` of the whole machine (linux-perf) at
# PERF_FREQ samples per second and CPU (499 unless given);
# a failure is reported on stderr and returns non-zero.
record_machine() {
  perf record -F "${PERF_FREQ:-499}" -g -a -o "$1" -- sleep "$2" >/dev/null || { echo "perf record failed" >&2; return 1; }
}

# stop_pids PID…: SIGTERM, up to 10 s for each to exit, then SIGKILL (ports and files free after).
stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; done
}

# machine_jiffies: "IDLE TOTAL" clock ticks of all CPUs so far (/proc/stat; idle includes iowait).
machine_jiffies() { awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }

# bench_with_cpu "SERVER_PIDS" CMD…: runs the bench command CMD (which prints one JSON line with
# throughput_per_s and runs at least 8 s) and prints its line with where the CPU went, sampled over
# 5 s from its third second: server_cpu_us_per_op (the servers' user + system time, summed),
# client_cpu_us_per_op (the bench process's) and machine_idle_pct (all CPUs). On a machine the client
# and every server share, the systems' throughputs compare as their CPU per operation does once the
# machine is busy (idle near 0).
bench_with_cpu() {
  local servers=$1 out bench t0 c0 i0 a0 s0 t1 c1 i1 a1 s1
  shift
  out=$(mktemp)
  "$@" >"$out" &
  bench=$!
  sleep 3
  # shellcheck disable=SC2086 # one word per pid
  t0=$(node_ticks $servers) c0=$(node_ticks "$bench") s0=$(date +%s.%N)
  read -r i0 a0 < <(machine_jiffies)
  sleep 5
  # shellcheck disable=SC2086
  t1=$(node_ticks $servers) c1=$(node_ticks "$bench") s1=$(date +%s.%N)
  read -r i1 a1 < <(machine_jiffies)
  wait "$bench" || { rm -f "$out"; return 1; }
  # Clock ticks are 1/100 s: µs per operation = ticks * 10^4 / (seconds * operations/s).
  jq -c --argjson t "$((t1 - t0))" --argjson c "$((c1 - c0))" --argjson s "$(echo "$s1 - $s0" | bc -l)" \
    --argjson idle "$((i1 - i0))" --argjson all "$((a1 - a0))" \
    '. + {server_cpu_us_per_op: ($t * 10000 / $s / .throughput_per_s | round),
          client_cpu_us_per_op: ($c * 10000 / $s / .throughput_per_s | round),
          machine_idle_pct: ($idle * 100 / $all | round)}' "$out"
  rm -f "$out"
}
