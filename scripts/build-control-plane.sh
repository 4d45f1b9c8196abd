#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd from their Go modules and caches the
# binaries by version outside the repository. Idempotent: a cached build is reused.
#
# Why a wrapper module: k8s.io/kubernetes replaces every staging module (k8s.io/api, apimachinery,
# client-go, ...) with ./staging/..., so `go install` of its commands fails. A throw-away module that
# requires k8s.io/kubernetes and pins each staging module to its published v0.X.Y builds them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=control-plane-versions.sh
. "$here/control-plane-versions.sh"

cache=${TENANTDB_CACHE:-$HOME/.cache/tenantdb}
out="$cache/control-plane/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION"
kube_cmds=(kube-apiserver kube-controller-manager kubectl)
need=("${kube_cmds[@]}" etcd)

have_all() { for b in "${need[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi

# Several test runs may start at once on a cold cache: one builds, the others wait for it.
mkdir -p "$out"
exec 9>"$out/.lock"
if ! flock -n 9; then
  echo "waiting for another build of the control plane to finish" >&2
  flock 9
fi
if have_all; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "go is required to build the control plane" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

kminor=${KUBE_VERSION#v1.}          # 34.4
stage="v0.$kminor"                  # v0.34.4

missing=()
for c in "${kube_cmds[@]}"; do [ -x "$out/$c" ] || missing+=("$c"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "building ${missing[*]} $KUBE_VERSION (takes many minutes on a cold cache)" >&2
  cd "$work"
  mkdir k8s && cd k8s
  go mod init tenantdb.local/k8sbuild >/dev/null 2>&1
  go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" > dl.json
  kgomod=$(sed -n 's/.*"GoMod": "\(.*\)",/\1/p' dl.json)
  # Every staging module the upstream go.mod replaces with ./staging/src/k8s.io/<name>.
  mapfile -t staged < <(sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$kgomod" | sort -u)
  {
    echo "module tenantdb.local/k8sbuild"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$kgomod" | head -1
    grep -E '^godebug' "$kgomod" || true
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    for m in "${staged[@]}"; do echo "	$m => $m $stage"; done
    echo ")"
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy -e >/dev/null 2>&1 || true
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=${kminor%%.*} -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for c in "${missing[@]}"; do
    go build -trimpath -ldflags "$ld" -o "$out/$c.tmp.$$" "k8s.io/kubernetes/cmd/$c"
    mv "$out/$c.tmp.$$" "$out/$c"
  done
fi

if [ ! -x "$out/etcd" ]; then
  echo "building etcd $ETCD_VERSION" >&2
  cd "$work"
  mkdir etcd && cd etcd
  go mod init tenantdb.local/etcdbuild >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp.$$" go.etcd.io/etcd/server/v3
  mv "$out/etcd.tmp.$$" "$out/etcd"
fi

have_all
echo "$out"
