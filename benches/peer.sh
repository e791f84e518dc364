#!/usr/bin/env bash
# The peer comparison in BENCHMARKS.md: kube-rs's `admission_controller` example (axum-server with
# rustls, `AdmissionReview<DynamicObject>`, answers with a JSON patch) against replica-guard and
# the floor, in one run, alternating so that machine noise hits all three alike.
#
#   default 5 runs x 8 s
#
# The peer is a binary you built yourself: this project never fetches or builds code from
# elsewhere. PEER_BIN names it; PEER_COMMIT (optional) is printed with the results. For the figure
# in BENCHMARKS.md: kube-rs (https://github.com/kube-rs/kube) at the commit named there, built with
# `cargo build --release -p kube-examples --example admission_controller`; PEER_BIN is then
# target/release/examples/admission_controller of that checkout. The example only stands in for a
# webhook under load: it answers with a patch (a mutating webhook), so it cannot replace
# replica-guard under a real API server. It serves /mutate on $ADMISSION_PRIVATE_IP:8443 with the
# certificate files in its working folder.
#
#   PEER_BIN=/path/to/admission_controller [PEER_COMMIT=ac95b199] bash benches/peer.sh [runs] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECONDS_PER_RUN=${2:-8}
PEER=${PEER_BIN:?"set PEER_BIN to the path of the peer's binary (kube-rs examples/admission_controller, built by you)"}
[ -x "$PEER" ] || { echo "peer.sh: PEER_BIN=$PEER is not an executable file" >&2; exit 1; }
commit=${PEER_COMMIT:-unknown}

if (exec 3<>/dev/tcp/127.0.0.1/8443) 2>/dev/null; then
  echo "peer.sh: port 8443 is in use (the example listens there); stop what uses it" >&2; exit 1
fi

source benches/setup.sh
results="$work/results.jsonl"
"$LOADGEN" registry --entries 10 --out "$work/limits.yaml"
mkdir "$work/peer"
cp "$work/certs/tls.crt" "$work/peer/admission-controller-tls.crt"
cp "$work/certs/tls.key" "$work/peer/admission-controller-tls.key"

"$BIN" serve --config "$(guard_config "$work/limits.yaml" 18443 18080)" >/dev/null 2>&1 & pids+=($!)
"$LOADGEN" floor --address 127.0.0.1:19443 --cert "$work/certs/tls.crt" --key "$work/certs/tls.key" 2>/dev/null & pids+=($!)
# The example logs every request at info (its own default); RUST_LOG=warn keeps it comparable.
(cd "$work/peer" && ADMISSION_PRIVATE_IP=127.0.0.1 RUST_LOG=warn exec "$PEER") >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 1 500); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.02; done
for _ in $(seq 1 500); do (exec 3<>/dev/tcp/127.0.0.1/8443) 2>/dev/null && break; sleep 0.02; done

load() { # label target path protocol rate
  "$LOADGEN" run --target "$2" --path "$3" --ca "$work/certs/ca.crt" --protocol "$4" --connections 16 \
    --rate "$5" --seconds "$SECONDS_PER_RUN" --warmup-seconds 2 --label "$1" >> "$results"
}
for run in $(seq 1 "$RUNS"); do
  echo "run $run/$RUNS" >&2
  for proto in h1 h2; do
    load "floor $proto max" 127.0.0.1:19443 /validate "$proto" 0
    load "guard $proto max" 127.0.0.1:18443 "/validate?timeout=10s" "$proto" 0
    load "kube-rs $proto max" 127.0.0.1:8443 /mutate "$proto" 0
  done
  load "guard h1 2000/s" 127.0.0.1:18443 "/validate?timeout=10s" h1 2000
  load "kube-rs h1 2000/s" 127.0.0.1:8443 /mutate h1 2000
done

python3 - "$results" "$commit" <<'PY'
import json, statistics, sys
results, commit = sys.argv[1], sys.argv[2]
runs = {}
for line in open(results):
    r = json.loads(line); runs.setdefault(r["label"], []).append(r)
med = lambda label, key: statistics.median(r[key] for r in runs[label])
print(f"kube-rs commit {commit}")
print("| run | n | throughput req/s | p50 µs | p99 µs | errors |")
print("|---|---|---|---|---|---|")
for label in runs:
    print(f"| {label} | {len(runs[label])} | {med(label,'throughput_rps'):.0f} | {med(label,'p50_us'):.0f} | {med(label,'p99_us'):.0f} | {sum(r['errors']+r['non_200'] for r in runs[label])} |")
print()
for proto in ["h1", "h2"]:
    g, k, f = f"guard {proto} max", f"kube-rs {proto} max", f"floor {proto} max"
    per_run = sorted(a["throughput_rps"] / b["throughput_rps"] for a, b in zip(runs[g], runs[k]))
    print(f"- {proto} max rate: replica-guard / kube-rs example {med(g,'throughput_rps')/med(k,'throughput_rps'):.2f} (per run {per_run[0]:.2f}-{per_run[-1]:.2f}); replica-guard / floor {med(g,'throughput_rps')/med(f,'throughput_rps'):.2f}; kube-rs / floor {med(k,'throughput_rps')/med(f,'throughput_rps'):.2f}")
g, k = "guard h1 2000/s", "kube-rs h1 2000/s"
print(f"- h1 at 2,000 req/s: p99 replica-guard {med(g,'p99_us')/1000:.3f} ms, kube-rs example {med(k,'p99_us')/1000:.3f} ms (ratio {med(g,'p99_us')/med(k,'p99_us'):.2f})")
PY
