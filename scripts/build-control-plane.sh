#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from their Go modules and caches
# the binaries by version outside the repository. Idempotent: a cached build is reused. Prints the
# folder of the binaries.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=control-plane-versions.sh
. "$here/control-plane-versions.sh"
# shellcheck source=kube-build.sh
. "$here/kube-build.sh"

cache=${TENANTDB_CACHE:-$HOME/.cache/tenantdb}
out="$cache/control-plane/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION"
kube_cmds=(kube-apiserver kube-controller-manager kubectl)
need=("${kube_cmds[@]}" etcd)

have_all() { for b in "${need[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi

# Several test runs may start at once on a cold cache: one builds, the others wait for it.
cache_lock "$out" "the control plane"
if have_all; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "go is required to build the control plane" >&2; exit 1; }
kube_build "$out" "${kube_cmds[@]}"

if [ ! -x "$out/etcd" ]; then
  echo "building etcd $ETCD_VERSION" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
    cd "$work"
    go mod init tenantdb.local/etcdbuild >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
    go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp.$$" go.etcd.io/etcd/server/v3
  )
  mv "$out/etcd.tmp.$$" "$out/etcd"
fi

have_all
echo "$out"
