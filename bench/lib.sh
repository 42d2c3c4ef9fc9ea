# Helpers shared by the bench scripts (sourced, not run).

# node_ticks PID…: CPU clock ticks (1/100 s, user + system) the processes used so far.
node_ticks() { for p in "$@"; do awk '{print $14+$15}' "/proc/$p/stat"; done | awk '{s+=$1} END {print s+0}'; }

# record_machine FILE SECONDS: `perf record -g` of the whole machine (linux-perf);
# a failure is reported on stderr and returns non-zero.
record_machine() {
  perf record -F 499 -g -a -o "$1" -- sleep "$2" >/dev/null || { echo "perf record failed" >&2; return 1; }
}

# stop_pids PID…: SIGTERM, up to 10 s for each to exit, then SIGKILL (ports and files free after).
stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; done
}
