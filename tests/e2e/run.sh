#!/usr/bin/env bash
# The end-to-end suite under a real kube-apiserver: installs the control plane and the tools once
# per machine (tests/e2e/install-tools.sh, cached under ~/.cache/replica-guard-tools), then runs
# the scenarios. Arguments are name filters: `bash tests/e2e/run.sh scale helm`.
# `bash tests/e2e/run.sh --bench-latency [ROUNDS] [WRITES]` runs the added-latency benchmark instead,
# `bash tests/e2e/run.sh --bench-scale [DEPLOYMENTS]` the audit at scale (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
tools=$(bash tests/e2e/install-tools.sh | tail -n 1)
export REPLICA_GUARD_TOOLS="$tools"
if [ "${1:-}" = --bench-latency ] || [ "${1:-}" = --bench-scale ]; then
  # The benchmark measures the release binary.
  cargo build --release --bin replica-guard
  export REPLICA_GUARD_BIN="$PWD/target/release/replica-guard"
fi
RUST_BACKTRACE="${RUST_BACKTRACE:-0}" cargo test --test e2e -- "$@"
