#!/usr/bin/env bash
# The end-to-end suite under a real kube-apiserver: installs the control plane and the tools once
# per machine (tests/e2e/install-tools.sh, cached under ~/.cache/replica-guard-tools), then runs
# the scenarios. Arguments are name filters: `bash tests/e2e/run.sh scale helm`; `node` runs only
# the real node's stories (the chart's image on a kubelet; newest Kubernetes only).
#   --kube MINOR                  the Kubernetes minor to run against (a build module under
#                                 tests/e2e/kube/: 1.34 or 1.37); default: the newest
#   --bench-latency [ROUNDS] [SECONDS]  the added-latency benchmark instead (BENCHMARKS.md): 1, 10
#                                       and 50 writers, webhooks on 127.0.0.1
#   --bench-latency-node [ROUNDS] [SECONDS]   the same through the chart's Service on the real node
#   --bench-scale [DEPLOYMENTS]         the audit at scale (BENCHMARKS.md)
#   --bench-freshness [ROUNDS]          from a registry write to enforcement, on the real node (BENCHMARKS.md)
#   --capture-fixtures            records what the API server sends into tests/fixtures/k8s-MINOR/
set -euo pipefail
cd "$(dirname "$0")/../.."
minor=$(ls tests/e2e/kube | sort -t. -k1,1n -k2,2n | tail -n 1)
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kube) [ $# -ge 2 ] || { echo "run.sh: --kube needs a minor version (one of: $(ls tests/e2e/kube | tr '\n' ' '))" >&2; exit 2; }
      minor="$2"; shift 2 ;;
    --kube=*) minor="${1#--kube=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -f "tests/e2e/kube/$minor/go.mod" ] || { echo "run.sh: no Kubernetes $minor here (tests/e2e/kube/ has: $(ls tests/e2e/kube | tr '\n' ' '))" >&2; exit 2; }
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "tests/e2e/kube/$minor/go.mod")
echo "e2e: Kubernetes $version (kube-apiserver and kube-controller-manager built from tests/e2e/kube/$minor)"
tools=$(bash tests/e2e/install-tools.sh kube "$minor" | tail -n 1)
export REPLICA_GUARD_TOOLS="$tools" REPLICA_GUARD_KUBE="$minor"
case "${args[0]:-}" in
  --bench-latency|--bench-latency-node)
    # The release binary, and the fixed-answer webhook it is compared with (the load generator's
    # `floor`, benches/loadgen.rs).
    cargo build --release --locked --bin replica-guard
    export REPLICA_GUARD_BIN="$PWD/target/release/replica-guard" REPLICA_GUARD_RELEASE_BIN="$PWD/target/release/replica-guard"
    REPLICA_GUARD_FLOOR_BIN=$(cargo build --release --locked --bench loadgen --message-format=json \
      | python3 -c 'import json, sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "loadgen" and m.get("executable")][-1])')
    export REPLICA_GUARD_FLOOR_BIN ;;
  --bench-scale)
    # The benchmark measures the release binary.
    cargo build --release --bin replica-guard
    export REPLICA_GUARD_BIN="$PWD/target/release/replica-guard" ;;
  --bench-freshness)
    cargo build --release --locked --bin replica-guard
    export REPLICA_GUARD_RELEASE_BIN="$PWD/target/release/replica-guard" ;;
  --*) ;;
  *)
    # The real node's stories (`node: ...`, where the minor builds a kubelet) run the image of the
    # release binary, as users do.
    if grep -q 'k8s.io/kubernetes/cmd/kubelet' "tests/e2e/kube/$minor/tools.go" \
      && { [ ${#args[@]} -eq 0 ] || printf '%s\n' "${args[@]}" | grep -q node; }; then
      cargo build --release --locked --bin replica-guard
      export REPLICA_GUARD_RELEASE_BIN="$PWD/target/release/replica-guard"
    fi ;;
esac
RUST_BACKTRACE="${RUST_BACKTRACE:-0}" cargo test --test e2e -- ${args[@]+"${args[@]}"}
