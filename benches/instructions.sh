#!/usr/bin/env bash
# Instructions per request of the floor and of replica-guard over the same fixed load, counted by
# callgrind: `bash benches/instructions.sh [requests]` (default 1,000 per protocol and server).
#
# Wall-clock figures on this shared machine move by ±30% from one run to the next; instruction
# counts of the same load repeat to within about 1% (how often the servers park and wake
# differs). They count the server's own user-space work (parsing, deciding, TLS, HTTP), not the
# kernel's (syscalls) nor waiting for a CPU: run.sh measures those. Each server runs under
# valgrind, gets a warm-up load (its 16 connections' TLS handshakes), then the counters are
# zeroed, the measured load sent at a rate it keeps up with, and the counters dumped.
#
# With `--cache-sim=yes`, callgrind also simulates the first-level instruction and data caches
# (this CPU's sizes) for the server alone: the misses per request say how much code and data a
# request touches that did not stay cached since the previous one. The load generator and the
# host also run between two requests on a real core and evict more; the simulation cannot see
# that.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-1000}
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
  || { echo "valgrind (with callgrind_control) is needed: apt-get install valgrind" >&2; exit 1; }

source benches/setup.sh
"$LOADGEN" registry --entries 10 --out "$work/limits-10.yaml"
config=$(guard_config "$work/limits-10.yaml" 38443 38080)

RATE=100 # requests/s: under callgrind a server is ~50x slower; it keeps up with this
counted() { # label protocol -> prints {"label", "protocol", "requests", "instructions"}
  local label=$1 proto=$2 port pid out
  if [ "$label" = floor ]; then
    port=39443
    valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file="$work/cg-$label-$proto.%p" \
      "$LOADGEN" floor --address 127.0.0.1:$port --cert "$work/certs/tls.crt" --key "$work/certs/tls.key" \
      >/dev/null 2>"$work/valgrind.err" & pid=$!
  else
    port=38443
    valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file="$work/cg-$label-$proto.%p" \
      "$BIN" serve --config "$config" >/dev/null 2>"$work/valgrind.err" & pid=$!
  fi
  pids+=("$pid")
  for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  "$LOADGEN" run --target 127.0.0.1:$port --ca "$work/certs/ca.crt" --protocol "$proto" --connections 16 \
    --rate $RATE --seconds 2 --warmup-seconds 0 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  out=$("$LOADGEN" run --target 127.0.0.1:$port --ca "$work/certs/ca.crt" --protocol "$proto" --connections 16 \
    --rate $RATE --seconds "$(python3 -c "print($REQUESTS / $RATE)")" --warmup-seconds 0)
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local dump; dump=$(ls "$work/cg-$label-$proto".*.1)
  python3 - "$label" "$proto" "$dump" "$out" <<'PY'
import json, sys
label, proto, dump, out = sys.argv[1:5]
# events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
events = next(list(map(int, l.split()[1:])) for l in open(dump) if l.startswith("summary:"))
r = json.loads(out)
assert r["errors"] == 0 and r["non_200"] == 0, r
print(json.dumps({"label": label, "protocol": proto, "requests": r["requests"], "instructions": events[0],
                  "i1_misses": events[3], "d1_misses": events[4] + events[5]}))
PY
}

for proto in h1 h2; do
  counted floor "$proto"
  counted guard "$proto"
done > "$work/counts.jsonl"

python3 - "$work/counts.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
per = {(r["label"], r["protocol"], k): r[k] / r["requests"] for r in rows for k in ["instructions", "i1_misses", "d1_misses"]}
print("| protocol | per request | floor | replica-guard | replica-guard / floor |")
print("|---|---|---|---|---|")
for proto in ["h1", "h2"]:
    for k, name in [("instructions", "instructions"), ("i1_misses", "L1 instruction-cache misses"), ("d1_misses", "L1 data-cache misses")]:
        f, g = per[("floor", proto, k)], per[("guard", proto, k)]
        print(f"| {proto} | {name} | {f:,.0f} | {g:,.0f} | {g / f:.2f} |")
PY
