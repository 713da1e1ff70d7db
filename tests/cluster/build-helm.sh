#!/usr/bin/env bash
# Build the helm CLI from its Go module (no download site is needed), once per version.
#
# Output: ${KUBELOOP_CACHE:-$HOME/.cache/kubeloop}/helm/$HELM_VERSION/helm, printed as the
# last line. Built with helm's own go.mod (go install outside any module), with the version
# and the Kubernetes version of its client libraries set the way helm's Makefile sets them,
# so `helm version` and the default capabilities of `helm template` are right. Written to a
# temporary name and renamed, so an interrupted build never leaves a partial binary.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
K8S_MODULES_MINOR="${K8S_MODULES_MINOR:-37}"   # helm v3.22.0 is built on k8s.io/* v0.37
cache="${KUBELOOP_CACHE:-$HOME/.cache/kubeloop}/helm/$HELM_VERSION"
target="$cache/helm"

if [[ ! -x "$target" ]]; then
  command -v go >/dev/null || { echo "building helm needs Go (go.dev/doc/install)" >&2; exit 1; }
  mkdir -p "$cache"
  work="$(mktemp -d "$cache/.build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "building helm $HELM_VERSION from its Go module (about a minute with a warm Go cache)" >&2
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$K8S_MODULES_MINOR"
  done
  GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$work" \
    go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$work/helm" "$target"
fi
echo "$target"
