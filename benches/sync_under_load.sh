#!/usr/bin/env bash
# Does a heavy registry sync slow admission? `bash benches/sync_under_load.sh [entries] [runs]
# [rate]` (default 100,000 entries, 5 runs, 1,000 reviews/s). The release replica-guard syncs a
# Firestore collection of N entries (pages of 300, from a local fake) and serves an open-loop
# load of fixture reviews over HTTP/1.1 meanwhile, in alternating runs:
#   quiet: refreshSeconds 3600, so no sync runs during the load (the baseline);
#   syncing: refreshSeconds 1, so a whole-collection sync (every page decoded) runs every second.
# Prints one JSON line per run (p50/p90/p99/max in µs) and the median p50/p99 of each and their
# ratio. Everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ENTRIES=${1:-100000}
RUNS=${2:-5}
RATE=${3:-1000}
source benches/setup.sh
"$LOADGEN" snapshot-fake --kind firestore --entries "$ENTRIES" --address 127.0.0.1:19556 & pids+=($!)
for _ in $(seq 1 3000); do (exec 3<>/dev/tcp/127.0.0.1/19556) 2>/dev/null && break; sleep 0.01; done
results="$work/results"
: >"$results"
for run in $(seq 1 "$RUNS"); do
  for mode in quiet syncing; do
    refresh=3600; [ "$mode" = syncing ] && refresh=1
    cat > "$work/config.yaml" <<YAML
server: {address: "127.0.0.1:38443", adminAddress: "127.0.0.1:38080", tls: {certFile: "$work/certs/tls.crt", keyFile: "$work/certs/tls.key"}}
registry: {firestore: {project: p, collection: ped, url: "http://127.0.0.1:19556/v1", refreshSeconds: $refresh, maxShrinkFraction: 1, listen: false}}
logging: {format: json, level: warn}
YAML
    "$BIN" serve --config "$work/config.yaml" >/dev/null 2>&1 & guard=$!
    for _ in $(seq 1 6000); do curl -sf http://127.0.0.1:38080/readyz >/dev/null && break; sleep 0.01; done
    "$LOADGEN" run --target 127.0.0.1:38443 --ca "$work/certs/ca.crt" --rate "$RATE" --seconds 8 --warmup-seconds 1 \
      --connections 8 --label "$mode" | tee -a "$results"
    kill "$guard"; wait "$guard" 2>/dev/null || true
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda mode, key: statistics.median(r[key] for r in runs if r["label"] == mode)
out = {m: {"p50_us": med(m, "p50_us"), "p99_us": med(m, "p99_us")} for m in ("quiet", "syncing")}
out["ratio_p50"] = round(out["syncing"]["p50_us"] / out["quiet"]["p50_us"], 2)
out["ratio_p99"] = round(out["syncing"]["p99_us"] / out["quiet"]["p99_us"], 2)
print(json.dumps(out))
PY
