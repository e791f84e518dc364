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

config() { # registry file, https port, admin port
  cat > "$work/config-$2.yaml" <<YAML
server: {address: "127.0.0.1:$2", adminAddress: "127.0.0.1:$3", tls: {certFile: "$work/certs/tls.crt", keyFile: "$work/certs/tls.key"}}
policy: {mode: enforce}
registry: {file: {path: "$1"}}
logging: {format: json, level: info}
YAML
  echo "$work/config-$2.yaml"
}

wait_ready() { for _ in $(seq 1 3000); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.01; done; echo "not ready" >&2; exit 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# The webhook's logs and audit records go to /dev/null: written, as in production, but not shown.
"$BIN" serve --config "$(config "$work/limits-10.yaml" 18443 18080)" >/dev/null 2>&1 & guard=$!; pids+=($guard)
"$LOADGEN" floor --address 127.0.0.1:19443 --cert "$work/certs/tls.crt" --key "$work/certs/tls.key" 2>/dev/null & floor=$!; pids+=($floor)
wait_ready 18080; sleep 0.5
idle_rss_10=$(rss_kib $guard)

load() { # label target protocol rate
  "$LOADGEN" run --target "$2" --ca "$work/certs/ca.crt" --protocol "$3" --connections 16 --rate "$4" \
    --seconds "$SECONDS_PER_RUN" --warmup-seconds 2 --label "$1" >> "$results"
}
peak_rss=0
sample_rss() { while kill -0 "$1" 2>/dev/null; do r=$(rss_kib "$2"); echo "$r"; sleep 0.2; done; }

for run in $(seq 1 "$RUNS"); do
  echo "run $run/$RUNS" >&2
  for proto in h1 h2; do
    load "floor $proto max" 127.0.0.1:19443 "$proto" 0
    load "guard $proto max" 127.0.0.1:18443 "$proto" 0 & l=$!
    sample_rss $l $guard > "$work/rss-load-10-$run-$proto"; wait $l
  done
  load "floor h1 2000/s" 127.0.0.1:19443 h1 2000
  load "guard h1 2000/s" 127.0.0.1:18443 h1 2000
done
kill $guard; wait $guard 2>/dev/null || true

# 100,000 registry entries: RSS idle and under load, and start-up time.
"$BIN" serve --config "$(config "$work/limits-100k.yaml" 28443 28080)" >/dev/null 2>&1 & big=$!; pids+=($big)
wait_ready 28080; sleep 0.5
idle_rss_100k=$(rss_kib $big)
load "guard-100k h1 max" 127.0.0.1:28443 h1 0 & l=$!
sample_rss $l $big > "$work/rss-load-100k"; wait $l
kill $big; wait $big 2>/dev/null || true
for i in $(seq 1 "$RUNS"); do
  "$LOADGEN" startup --bin "$BIN" --config "$work/config-28443.yaml" --admin 127.0.0.1:28080 >> "$work/startup"
done

python3 - "$results" "$work" "$idle_rss_10" "$idle_rss_100k" <<'PY'
import json, statistics, sys, glob
results, work, idle10, idle100k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
runs = {}
for line in open(results):
    r = json.loads(line); runs.setdefault(r["label"], []).append(r)
med = lambda label, key: statistics.median(r[key] for r in runs[label])
print(f"| run | n | throughput req/s | p50 µs | p90 µs | p99 µs | max µs | errors |")
print(f"|---|---|---|---|---|---|---|---|")
for label in runs:
    print(f"| {label} | {len(runs[label])} | {med(label,'throughput_rps'):.0f} | {med(label,'p50_us'):.0f} | {med(label,'p90_us'):.0f} | {med(label,'p99_us'):.0f} | {med(label,'max_us'):.0f} | {sum(r['errors']+r['non_200'] for r in runs[label])} |")
print()
# Runs alternate floor and replica-guard, so run i of each met the same machine noise: the
# per-run ratios show the spread.
def per_run(g, f, key):
    return sorted(a[key] / b[key] for a, b in zip(runs[g], runs[f]))
span = lambda xs: f"per run {min(xs):.2f}-{max(xs):.2f}"
for proto in ["h1", "h2"]:
    g, f = f"guard {proto} max", f"floor {proto} max"
    print(f"- {proto} max-rate throughput, replica-guard / floor: {med(g,'throughput_rps')/med(f,'throughput_rps'):.2f} ({span(per_run(g, f, 'throughput_rps'))}; p99 ratio {med(g,'p99_us')/med(f,'p99_us'):.2f})")
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
