#!/usr/bin/env bash
# Builds the helm CLI from its Go module and caches it by version outside the repository (no
# release download is reachable from every machine; the Go module proxy is). Idempotent: a cached
# build is reused. Prints the path of the binary.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=control-plane-versions.sh
. "$here/control-plane-versions.sh"

cache=${TENANTDB_CACHE:-$HOME/.cache/tenantdb}
out="$cache/helm/$HELM_VERSION"
if [ -x "$out/helm" ]; then echo "$out/helm"; exit 0; fi

mkdir -p "$out"
exec 9>"$out/.lock"
if ! flock -n 9; then
  echo "waiting for another build of helm to finish" >&2
  flock 9
fi
if [ -x "$out/helm" ]; then echo "$out/helm"; exit 0; fi

# shellcheck source=go-toolchain.sh
. "$here/go-toolchain.sh"
ensure_go
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building helm $HELM_VERSION (a few minutes on a cold cache)" >&2
cd "$work"
go mod init tenantdb.local/helmbuild >/dev/null 2>&1
go get "helm.sh/helm/v4@$HELM_VERSION" >/dev/null 2>&1

go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" -o "$out/helm.tmp.$$" "helm.sh/helm/v4/cmd/helm"
mv "$out/helm.tmp.$$" "$out/helm"
echo "$out/helm"
