# Sourced by the benchmark scripts (run.sh, peer.sh, snapshot.sh, instructions.sh, tail.sh): builds the
# release binary and the load generator, gives a scratch folder with development certificates, and
# `guard_config` and `wait_ready` for a replica-guard on 127.0.0.1. Processes added to `pids` are
# stopped, and the folder removed, when the script ends, also on failure.
cargo build --release --quiet --bin replica-guard --bench loadgen
BIN=target/release/replica-guard
LOADGEN=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
"$BIN" certs --out-dir "$work/certs" >/dev/null

# A replica-guard config on 127.0.0.1 (file registry, the scratch certificates, enforce, JSON logs
# at info): `guard_config REGISTRY HTTPS_PORT ADMIN_PORT` prints its path.
guard_config() {
  cat > "$work/config-$2.yaml" <<YAML
server: {address: "127.0.0.1:$2", adminAddress: "127.0.0.1:$3", tls: {certFile: "$work/certs/tls.crt", keyFile: "$work/certs/tls.key"}}
policy: {mode: enforce}
registry: {file: {path: "$1"}}
logging: {format: json, level: info}
YAML
  echo "$work/config-$2.yaml"
}

# Waits up to 30 s for /readyz on an admin port.
wait_ready() { for _ in $(seq 1 3000); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.01; done; echo "not ready" >&2; exit 1; }
