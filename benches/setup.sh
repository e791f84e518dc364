# Sourced by the benchmark scripts (run.sh, peer.sh, snapshot.sh): builds the release binary and
# the load generator, and gives a scratch folder with development certificates. Processes added
# to `pids` are stopped, and the folder removed, when the script ends, also on failure.
cargo build --release --bins --bench loadgen 2>&1 | tail -1
BIN=target/release/replica-guard
LOADGEN=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
"$BIN" certs --out-dir "$work/certs" >/dev/null
