#!/usr/bin/env bash
# Builds replica-guard's container image as an OCI archive without Docker and without pulling a
# base image: the release binary on a root file system made from Debian's packages (glibc,
# libgcc, CA certificates) and a non-root user 65532 — what the Dockerfile's distroless final
# stage holds. Its user, ports, entrypoint and command are read from that final stage, so the two
# images start the same way (tests/e2e/node_stories.rs checks it). Reproducible: the same binary
# and packages give the same digest (tests/e2e/oci-image.py writes every entry with one time, one
# owner and sorted).
#
#   bash tests/e2e/image.sh [--binary PATH] [--ref NAME:TAG] OUT.tar     the webhook's image
#   bash tests/e2e/image.sh --pause [--ref NAME:TAG] OUT.tar             the node's pause image
#                                                                        (Debian's catatonit -P)
#   --install-as NAME   the binary's name under /usr/local/bin (default replica-guard; the latency
#                       benchmark's fixed-answer webhook image holds the load generator as `floor`)
# Load it with `ctr -n k8s.io images import OUT.tar`, or push it with
# `skopeo copy oci-archive:OUT.tar docker://REGISTRY/replica-guard:TAG`. Prints the manifest digest.
#
# The packages come from the machine's apt sources (`apt-get download`), cached under
# ~/.cache/replica-guard-tools/image-debs; the binary links against the machine's glibc, so the
# image's glibc is the same release's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="${REPLICA_GUARD_TOOLS:-$HOME/.cache/replica-guard-tools}"
version=$(awk -F'"' '/^appVersion:/ {print $2}' "$root/charts/replica-guard/Chart.yaml")
binary="" ref="" pause="" install_as="replica-guard"
while [ $# -gt 1 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --ref) ref="$2"; shift 2 ;;
    --pause) pause=1; shift ;;
    --install-as) install_as="$2"; shift 2 ;;
    *) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: image.sh [--binary PATH] [--ref NAME:TAG] [--pause] OUT.tar" >&2; exit 2; }
out="$1"
log() { echo "image.sh: $*" >&2; }
fail() { log "$*"; exit 1; }
command -v python3 >/dev/null || fail "python3 is missing (apt-get install python3)"
command -v dpkg-deb >/dev/null || fail "dpkg-deb is missing: the image is made from Debian packages"

# The .deb of each package, the machine's candidate version, downloaded once.
debs="$tools/image-debs"
mkdir -p "$debs"
deb() {
  local name="$1" v
  v=$(apt-cache policy "$name" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$v" ] || [ "$v" = "(none)" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    v=$(apt-cache policy "$name" 2>/dev/null | awk '/Candidate:/ {print $2}')
  fi
  [ -n "$v" ] && [ "$v" != "(none)" ] || fail "Debian package $name is not available from the machine's apt sources"
  local file; file=$(ls "$debs/${name}_${v//:/%3a}_"*.deb 2>/dev/null | head -n 1 || true)
  if [ -z "$file" ]; then
    if ! (cd "$debs" && apt-get download -qq "$name=$v" >/dev/null 2>&1); then
      # Stale package lists name a version the mirror no longer has: refresh them once.
      apt-get update -qq >/dev/null 2>&1 || true
      v=$(apt-cache policy "$name" 2>/dev/null | awk '/Candidate:/ {print $2}')
      (cd "$debs" && apt-get download -qq "$name=$v" >/dev/null 2>&1) || fail "apt-get download $name=$v failed"
    fi
    file=$(ls "$debs/${name}_${v//:/%3a}_"*.deb | head -n 1)
  fi
  echo "$file"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs"

if [ -n "$pause" ]; then
  ref="${ref:-replica-guard.test/pause:catatonit}"
  dpkg-deb -x "$(deb catatonit)" "$work/catatonit"
  install -D -m 0755 "$work/catatonit/usr/bin/catatonit" "$rootfs/usr/bin/catatonit"
  echo '{"Entrypoint":["/usr/bin/catatonit","-P"],"User":"65535:65535"}' >"$work/config.json"
  SOURCE_DATE_EPOCH=0 python3 "$here/oci-image.py" --rootfs "$rootfs" --ref "$ref" --out "$out" --config "$work/config.json"
  exit 0
fi

ref="${ref:-ghcr.io/example/replica-guard:$version}"
if [ -z "$binary" ]; then
  command -v cargo >/dev/null || fail "cargo is missing: the image holds the release binary"
  (cd "$root" && cargo build --release --locked --bin replica-guard >&2)
  binary="$root/target/release/replica-guard"
fi
[ -x "$binary" ] || fail "no binary at $binary"

for p in libc6 libgcc-s1 ca-certificates; do dpkg-deb -x "$(deb "$p")" "$rootfs"; done
# What a distroless image leaves out of those packages: documentation, the CA package's tools
# (the bundle is made here, as update-ca-certificates would: every Mozilla certificate, sorted).
rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/lintian" "$rootfs/usr/share/man" "$rootfs/usr/sbin" \
  "$rootfs/etc/ca-certificates.conf" "$rootfs/usr/share/locale"
mkdir -p "$rootfs/etc/ssl/certs"
find "$rootfs/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort | xargs cat \
  >"$rootfs/etc/ssl/certs/ca-certificates.crt"
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA certificates in the ca-certificates package"
rm -rf "$rootfs/usr/share/ca-certificates"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
mkdir -p "$rootfs/home/nonroot" "$rootfs/tmp" "$rootfs/root"
chmod 1777 "$rootfs/tmp"
install -D -m 0755 "$binary" "$rootfs/usr/local/bin/$install_as"

# The Dockerfile's final stage (after its last FROM): user, ports, entrypoint, command.
python3 - "$root/Dockerfile" "$work/config.json" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
last = max(i for i, l in enumerate(lines) if l.startswith("FROM "))
config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]}
for l in lines[last + 1:]:
    word, _, rest = l.partition(" ")
    if word == "USER":
        config["User"] = rest.strip()
    elif word == "EXPOSE":
        config["ExposedPorts"] = {p + "/tcp": {} for p in rest.split()}
    elif word == "ENTRYPOINT":
        config["Entrypoint"] = json.loads(rest)
    elif word == "CMD":
        config["Cmd"] = json.loads(rest)
for key in ["User", "ExposedPorts", "Entrypoint", "Cmd"]:
    if key not in config:
        sys.exit(f"the Dockerfile's final stage has no {key}")
json.dump(config, open(sys.argv[2], "w"))
EOF
log "$(du -sh "$rootfs" | cut -f1) root file system: $(ls "$debs" | tr '\n' ' ')"
SOURCE_DATE_EPOCH=0 python3 "$here/oci-image.py" --rootfs "$rootfs" --ref "$ref" --out "$out" \
  --config "$work/config.json" --owner /home/nonroot=65532:65532
