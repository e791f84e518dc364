#!/usr/bin/env bash
# Produces every figure in BENCHMARKS.md: `bash benches/run.sh [runs] [seconds]` (default 5 x 10 s).
# Starts the release replica-guard and the floor server (same TLS/HTTP stack, fixed answer) on
# 127.0.0.1, alternates load runs between them so that machine noise hits both alike, measures RSS
# and start-up, and prints medians and ratios. Everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECONDS_PER_RUN=${2:-10}

source benches/setup.sh
results="$work/results.jsonl"
"$LOADGEN" registry --entries 10 --out "$work/limits-10.yaml"
"$LOADGEN" registry --entries 100000 --out "$work/limits-100k.yaml"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# The webhook's logs and audit records go to /dev/null: written, as in production, but not shown.
"$BIN" serve --config "$(guard_config "$work/limits-10.yaml" 18443 18080)" >/dev/null 2>&1 & guard=$!; pids+=($guard)
"$LOADGEN" floor --address 127.0.0.1:19443 --cert "$work/certs/tls.crt" --key "$work/certs/tls.key" 2>/dev/null & floor=$!; pids+=($floor)
wait_ready 18080; sleep 0.5
idle_rss_10=$(rss_kib $guard)

# Besides the load generator's figures, each run records what the server itself spent: CPU time
# (user + system, /proc/PID/stat), time its threads waited for a CPU (/proc/PID/task/*/schedstat)
# and the machine's steal time (/proc/stat): the parts of a latency tail that are not the server's work.
tick_us=$((1000000 / $(getconf CLK_TCK)))
server_cpu_us() { awk -v t="$tick_us" '{printf "%d\n", ($14 + $15) * t}' "/proc/$1/stat"; }
runqueue_wait_us() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{w += $2} END {printf "%d\n", w / 1000}'; }
steal_us() { awk -v t="$tick_us" '/^cpu / {printf "%d\n", $9 * t}' /proc/stat; }
load() { # label target protocol rate server-pid
  local c0 w0 s0
  c0=$(server_cpu_us "$5"); w0=$(runqueue_wait_us "$5"); s0=$(steal_us)
  "$LOADGEN" run --target "$2" --ca "$work/certs/ca.crt" --protocol "$3" --connections 16 --rate "$4" \
    --seconds "$SECONDS_PER_RUN" --warmup-seconds 2 --label "$1" >> "$results"
  echo "{\"label\": \"$1\", \"server_cpu_us\": $(( $(server_cpu_us "$5") - c0 )), \"runqueue_wait_us\": $(( $(runqueue_wait_us "$5") - w0 )), \"steal_us\": $(( $(steal_us) - s0 ))}" >> "$work/server.jsonl"
}
peak_rss=0
sample_rss() { while kill -0 "$1" 2>/dev/null; do r=$(rss_kib "$2"); echo "$r"; sleep 0.2; done; }

# Odd runs measure the floor first, even runs replica-guard first (ABBA), so that a machine
# getting busier or quieter during a run does not favour either.
pair() { # run protocol rate
  if (( $1 % 2 )); then
    load "floor $2 $4" 127.0.0.1:19443 "$2" "$3" "$floor"
    load "guard $2 $4" 127.0.0.1:18443 "$2" "$3" "$guard"
  else
    load "guard $2 $4" 127.0.0.1:18443 "$2" "$3" "$guard"
    load "floor $2 $4" 127.0.0.1:19443 "$2" "$3" "$floor"
  fi
}
for run in $(seq 1 "$RUNS"); do
  echo "run $run/$RUNS" >&2
  for proto in h1 h2; do
    pair "$run" "$proto" 0 max & l=$!
    sample_rss $l $guard > "$work/rss-load-10-$run-$proto"; wait $l
  done
  pair "$run" h1 2000 2000/s
done
kill $guard; wait $guard 2>/dev/null || true

# 100,000 registry entries: RSS idle and under load, and start-up time.
"$BIN" serve --config "$(guard_config "$work/limits-100k.yaml" 28443 28080)" >/dev/null 2>&1 & big=$!; pids+=($big)
wait_ready 28080; sleep 0.5
idle_rss_100k=$(rss_kib $big)
load "guard-100k h1 max" 127.0.0.1:28443 h1 0 "$big" & l=$!
sample_rss $l $big > "$work/rss-load-100k"; wait $l
kill $big; wait $big 2>/dev/null || true
for i in $(seq 1 "$RUNS"); do
  "$LOADGEN" startup --bin "$BIN" --config "$work/config-28443.yaml" --admin 127.0.0.1:28080 >> "$work/startup"
done

python3 - "$results" "$work" "$idle_rss_10" "$idle_rss_100k" "$SECONDS_PER_RUN" "$(nproc)" <<'PY'
import json, statistics, sys, glob
results, work, idle10, idle100k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seconds, cpus = float(sys.argv[5]) + 2, int(sys.argv[6])  # the server counters include the 2 s warm-up
runs = {}
for line, server in zip(open(results), open(f"{work}/server.jsonl")):
    r, s = json.loads(line), json.loads(server)
    assert r["label"] == s["label"]
    served = r["throughput_rps"] * seconds  # requests in the whole run, warm-up included
    r["cpu_us_per_request"] = s["server_cpu_us"] / served
    r["wait_us_per_request"] = s["runqueue_wait_us"] / served
    r["steal_share"] = s["steal_us"] / (seconds * cpus * 1e6)
    runs.setdefault(r["label"], []).append(r)
med = lambda label, key: statistics.median(r[key] for r in runs[label])
print(f"| run | n | throughput req/s | p50 µs | p90 µs | p99 µs | max µs | server CPU µs/req | waiting for a CPU µs/req | steal | errors |")
print(f"|---|---|---|---|---|---|---|---|---|---|---|")
for label in runs:
    print(f"| {label} | {len(runs[label])} | {med(label,'throughput_rps'):.0f} | {med(label,'p50_us'):.0f} | {med(label,'p90_us'):.0f} | {med(label,'p99_us'):.0f} | {med(label,'max_us'):.0f} | {med(label,'cpu_us_per_request'):.0f} | {med(label,'wait_us_per_request'):.0f} | {100*med(label,'steal_share'):.1f}% | {sum(r['errors']+r['non_200'] for r in runs[label])} |")
print()
# Runs alternate floor and replica-guard, so run i of each met the same machine noise: the
# per-run ratios show the spread.
def per_run(g, f, key):
    return sorted(a[key] / b[key] for a, b in zip(runs[g], runs[f]))
span = lambda xs: f"per run {min(xs):.2f}-{max(xs):.2f}, median of the per-run ratios {statistics.median(xs):.2f}"
for proto in ["h1", "h2"]:
    g, f = f"guard {proto} max", f"floor {proto} max"
    print(f"- {proto} max-rate throughput, replica-guard / floor: {med(g,'throughput_rps')/med(f,'throughput_rps'):.2f} ({span(per_run(g, f, 'throughput_rps'))}; p99 ratio {med(g,'p99_us')/med(f,'p99_us'):.2f}; server CPU per request {med(g,'cpu_us_per_request')/med(f,'cpu_us_per_request'):.2f})")
g, f = "guard h1 2000/s", "floor h1 2000/s"
print(f"- h1 at 2,000 req/s: replica-guard p99 {med(g,'p99_us')/1000:.3f} ms, floor p99 {med(f,'p99_us')/1000:.3f} ms (ratio {med(g,'p99_us')/med(f,'p99_us'):.2f}, {span(per_run(g, f, 'p99_us'))}; p50 ratio {med(g,'p50_us')/med(f,'p50_us'):.2f})")
def peak(pattern):
    vals = [int(x) for fn in glob.glob(f"{work}/{pattern}") for x in open(fn).read().split()]
    return max(vals) if vals else 0
print(f"- RSS, 10 entries: idle {idle10/1024:.1f} MiB, under load (peak) {peak('rss-load-10-*')/1024:.1f} MiB")
print(f"- RSS, 100,000 entries: idle {idle100k/1024:.1f} MiB, under load (peak) {peak('rss-load-100k')/1024:.1f} MiB")
starts = [json.loads(l)["startup_ms"] for l in open(f"{work}/startup")]
print(f"- start-up to ready with 100,000 entries: median {statistics.median(starts):.0f} ms (runs: {', '.join(f'{s:.0f}' for s in starts)})")
PY
