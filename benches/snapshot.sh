#!/usr/bin/env bash
# The snapshot sources with a large registry: `bash benches/snapshot.sh [firestore|bigquery]
# [entries] [runs]` (default firestore, 100,000 and 5). A local server speaks the Firestore REST
# listing (pages of 300) or BigQuery's query API (pages of 10,000 rows); the release replica-guard
# syncs the whole registry before /readyz turns 200. Prints the start-up to ready (= one full sync)
# per run and the server's RSS after the sync. Everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:-firestore}
ENTRIES=${2:-100000}
RUNS=${3:-5}
source benches/setup.sh
"$LOADGEN" snapshot-fake --kind "$KIND" --entries "$ENTRIES" --address 127.0.0.1:19555 & pids+=($!)
for _ in $(seq 1 3000); do (exec 3<>/dev/tcp/127.0.0.1/19555) 2>/dev/null && break; sleep 0.01; done
cat > "$work/config.yaml" <<YAML
server: {address: "127.0.0.1:38443", adminAddress: "127.0.0.1:38080", tls: {certFile: "$work/certs/tls.crt", keyFile: "$work/certs/tls.key"}}
registry: $(if [ "$KIND" = bigquery ]; then echo '{bigquery: {project: p, query: "SELECT 1", url: "http://127.0.0.1:19555/bigquery/v2"}}'; else echo '{firestore: {project: p, collection: ped, url: "http://127.0.0.1:19555/v1", listen: false}}'; fi)
logging: {format: json, level: warn}
YAML
for _ in $(seq 1 "$RUNS"); do
  "$LOADGEN" startup --bin "$BIN" --config "$work/config.yaml" --admin 127.0.0.1:38080
done
"$BIN" serve --config "$work/config.yaml" >/dev/null 2>&1 & guard=$!; pids+=($guard)
for _ in $(seq 1 6000); do curl -sf http://127.0.0.1:38080/readyz >/dev/null && break; sleep 0.01; done
sleep 1
echo "{\"entries\": $ENTRIES, \"rss_after_sync_mib\": $(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$guard/status), \"peak_rss_mib\": $(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$guard/status)}"
