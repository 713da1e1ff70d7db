#!/usr/bin/env bash
# Build a real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kube-proxy) from the
# published Go modules, into a cache outside the clone:
#
#   ${KUBELOOP_CACHE:-$HOME/.cache/kubeloop}/k8s/$K8S_VERSION/bin
#
# and the process node (kubeloop-node, cmd/kubeloop-node + internal/) into
#
#   ${KUBELOOP_CACHE:-$HOME/.cache/kubeloop}/node/<sha256 of its sources>/kubeloop-node
#
# Each binary is built only when missing, written to a temporary name and then
# renamed, so an interrupted build never leaves a half-written binary behind.
# With everything present the script returns immediately without invoking go.
#
# Usage:
#   build.sh                    build what is missing; the last line on stdout is
#                               the k8s bin directory
#   build.sh --print-node-path  build only kubeloop-node if missing; the last line
#                               on stdout is the node binary's path
#
# Environment:
#   K8S_VERSION     Kubernetes version (default v1.37.2); must match go.mod,
#                   see gen-replaces.sh to bump it.
#   KUBELOOP_CACHE  cache root (default $HOME/.cache/kubeloop)
#   COMPONENTS      space-separated subset to build (default: all, including
#                   kubeloop-node)
#   GOCACHE         go build cache (default: go's own, usually ~/.cache/go-build)
#   GOMODCACHE      module cache (default: go's own, usually ~/go/pkg/mod)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CACHE_ROOT="${KUBELOOP_CACHE:-$HOME/.cache/kubeloop}"
BIN_DIR="$CACHE_ROOT/k8s/$K8S_VERSION/bin"

MODE=all
case "${1:-}" in
  "") ;;
  --print-node-path) MODE=node ;;
  -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "build.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The node binary's path depends on a hash of everything it is built from,
# so an edit rebuilds it and an unchanged tree reuses it.
node_source_hash() {
  (
    cd "$here"
    {
      echo "K8S_VERSION=$K8S_VERSION"
      find cmd/kubeloop-node internal go.mod go.sum -type f -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1
  )
}
NODE_DIR="$CACHE_ROOT/node/$(node_source_hash)"
NODE_BIN="$NODE_DIR/kubeloop-node"

# Required components, then optional ones (a failure is reported, not fatal).
REQUIRED=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubeloop-node)
OPTIONAL=(kube-proxy)
if [[ "$MODE" == node ]]; then
  WANTED=(kubeloop-node)
else
  read -r -a WANTED <<< "${COMPONENTS:-${REQUIRED[*]} ${OPTIONAL[*]}}"
fi

# Where a component's binary lives.
out_path() {
  if [[ "$1" == kubeloop-node ]]; then echo "$NODE_BIN"; else echo "$BIN_DIR/$1"; fi
}
# What the script prints last.
result() {
  if [[ "$MODE" == node ]]; then echo "$NODE_BIN"; else echo "$BIN_DIR"; fi
}

is_optional() {
  local c
  for c in "${OPTIONAL[@]}"; do [[ "$c" == "$1" ]] && return 0; done
  return 1
}

# Fast path: nothing to do, no go invocation at all.
missing=()
for c in "${WANTED[@]}"; do
  [[ -x "$(out_path "$c")" ]] || missing+=("$c")
done
if (( ${#missing[@]} == 0 )); then
  result
  exit 0
fi

cd "$here"

export GOTOOLCHAIN=local
export CGO_ENABLED=0
# Never let a build rewrite go.mod/go.sum; they are committed.
export GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"

log() { echo "build.sh: $*" >&2; }

mod_version() { go list -m -f '{{.Version}}' "$1"; }

pinned="$(mod_version k8s.io/kubernetes)"
if [[ "$pinned" != "$K8S_VERSION" ]]; then
  log "K8S_VERSION=$K8S_VERSION but go.mod pins k8s.io/kubernetes $pinned."
  log "bump with: K8S_VERSION=$K8S_VERSION $here/gen-replaces.sh && (cd $here && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod tidy)"
  exit 1
fi

# v1.37.2 -> major 1, minor 37.
ver="${K8S_VERSION#v}"
major="${ver%%.*}"
rest="${ver#*.}"
minor="${rest%%.*}"
# Fixed build date (reproducible): the release's publication time from the module proxy.
build_date="$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
etcd_version="$(mod_version go.etcd.io/etcd/server/v3)"
# The module proxy does not record the upstream commit; leave it empty unless given.
git_commit="${KUBE_GIT_COMMIT:-}"

k8s_ldflags=(-s -w)
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=(
    "-X=$pkg.gitVersion=$K8S_VERSION"
    "-X=$pkg.gitMajor=$major"
    "-X=$pkg.gitMinor=$minor"
    "-X=$pkg.gitCommit=$git_commit"
    "-X=$pkg.gitTreeState=clean"
    "-X=$pkg.buildDate=$build_date"
  )
done
# etcd's version string is a constant in go.etcd.io/etcd/api/v3/version; only the SHA is a variable.
etcd_ldflags=(-s -w "-X=go.etcd.io/etcd/api/v3/version.GitSHA=module-$etcd_version")
# kubeloop-node reports the Kubernetes version as its kubeletVersion.
node_ldflags=(-s -w "-X=kubeloop.io/testcluster/internal/node/agent.Version=$K8S_VERSION")

# Same tags as upstream's hack/lib/golang.sh for non-debug builds.
TAGS="selinux,notest,grpcnotrace"

mkdir -p "$BIN_DIR"
[[ " ${missing[*]} " == *" kubeloop-node "* ]] && mkdir -p "$NODE_DIR"
# Remove temp files left by a killed earlier run (skip those of a run still alive).
for f in "$BIN_DIR"/.*.tmp.* "$NODE_DIR"/.*.tmp.*; do
  [[ -e "$f" ]] || continue
  kill -0 "${f##*.}" 2>/dev/null || rm -f "$f"
done
tmp_files=()
cleanup() { local f; for f in "${tmp_files[@]+"${tmp_files[@]}"}"; do rm -f "$f"; done; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

failed_optional=()
for c in "${missing[@]}"; do
  if [[ ! -d "cmd/$c" ]]; then
    log "unknown component: $c"
    exit 1
  fi
  tags="$TAGS"
  if [[ "$c" == etcd ]]; then
    ldflags="${etcd_ldflags[*]}"
  elif [[ "$c" == kubeloop-node ]]; then
    ldflags="${node_ldflags[*]}"
    tags=""
  else
    ldflags="${k8s_ldflags[*]}"
  fi
  dest="$(out_path "$c")"
  tmp="$(dirname "$dest")/.$c.tmp.$$"
  tmp_files+=("$tmp")
  log "building $c ($K8S_VERSION) ..."
  start=$SECONDS
  if go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$tmp" "./cmd/$c"; then
    mv -f "$tmp" "$dest"
    log "built $c in $((SECONDS - start))s"
  else
    rm -f "$tmp"
    if is_optional "$c"; then
      log "WARNING: optional component $c failed to build; continuing"
      failed_optional+=("$c")
    else
      log "ERROR: $c failed to build"
      exit 1
    fi
  fi
done

if (( ${#failed_optional[@]} )); then
  log "optional components not built: ${failed_optional[*]}"
fi
result
