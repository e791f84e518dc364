#!/usr/bin/env bash
# Where the latency tail at 2,000 requests/s comes from, in the floor and in replica-guard:
# `bash benches/tail.sh [pairs] [seconds]` (default 3 pairs of 6 s; needs `perf` with the sched
# tracepoints). Each run is recorded with `perf sched record` (every context switch on the
# machine); the server's threads' time slices are then read with `perf sched timehist`: how long
# each waited for a CPU after it became runnable, and how long it ran. A request's latency is
# its own work plus the waits of the threads that handle it; printed side by side, per run.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
SECONDS_PER_RUN=${2:-6}
command -v perf >/dev/null || { echo "perf is needed (linux-perf)" >&2; exit 1; }

source benches/setup.sh
"$LOADGEN" registry --entries 10 --out "$work/limits-10.yaml"
"$BIN" serve --config "$(guard_config "$work/limits-10.yaml" 48443 48080)" >/dev/null 2>&1 & guard=$!; pids+=($guard)
"$LOADGEN" floor --address 127.0.0.1:49443 --cert "$work/certs/tls.crt" --key "$work/certs/tls.key" 2>/dev/null & floor=$!; pids+=($floor)
wait_ready 48080

recorded() { # label port server-pid
  perf sched record -o "$work/sched.data" -- sleep $((SECONDS_PER_RUN + 3)) >/dev/null 2>&1 & local rec=$!
  sleep 0.5
  local out
  out=$("$LOADGEN" run --target "127.0.0.1:$2" --ca "$work/certs/ca.crt" --protocol h1 --connections 16 \
    --rate 2000 --seconds "$SECONDS_PER_RUN" --warmup-seconds 1 --label "$1")
  wait $rec || true
  perf sched timehist -i "$work/sched.data" 2>/dev/null > "$work/timehist.txt"
  python3 - "$1" "$3" "$out" "$work/timehist.txt" <<'PY'
import json, re, sys
label, pid, out, timehist = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
waits, runs = [], []
# "  time  [cpu]  task[tid/pid]  wait-time  sch-delay  run-time" (ms); task names have no spaces here
row = re.compile(r"^\s*[\d.]+\s+\[\d+\]\s+\S*\[(\d+)/(\d+)\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")
for line in open(timehist):
    m = row.match(line)
    if m and m.group(2) == pid:
        waits.append(float(m.group(4))); runs.append(float(m.group(5)))
def q(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0
print(f"| {label} | {out['p50_us'] / 1000:.3f} | {out['p99_us'] / 1000:.3f} | {len(runs):,} | "
      f"{q(waits, .5):.3f} | {q(waits, .99):.3f} | {max(waits, default=0):.3f} | {sum(w > 1 for w in waits)} | "
      f"{q(runs, .5):.3f} | {sum(runs) * 1000 / (out['rate'] * (out['requests'] / out['throughput_rps'] + 1)):.0f} |")
PY
}

echo "| run | request p50 ms | request p99 ms | server thread slices | waited for a CPU p50 ms | p99 ms | max ms | waits over 1 ms | slice ran p50 ms | ran µs per request |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for pair in $(seq 1 "$PAIRS"); do
  if (( pair % 2 )); then
    recorded "floor $pair" 49443 "$floor"; recorded "guard $pair" 48443 "$guard"
  else
    recorded "guard $pair" 48443 "$guard"; recorded "floor $pair" 49443 "$floor"
  fi
done
