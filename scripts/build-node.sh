#!/usr/bin/env bash
# Builds kubelet, kube-proxy and kube-scheduler from k8s.io/kubernetes at the control plane's version
# and caches them by version outside the repository. Idempotent: a cached build is reused. Prints
# the folder of the binaries. After build-control-plane.sh the Go build cache is warm (about 95 s
# here); cold, the kubelet alone takes some 10 minutes on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=control-plane-versions.sh
. "$here/control-plane-versions.sh"
# shellcheck source=kube-build.sh
. "$here/kube-build.sh"

cache=${TENANTDB_CACHE:-$HOME/.cache/tenantdb}
out="$cache/node/k8s-$KUBE_VERSION"
cmds=(kubelet kube-proxy kube-scheduler)

have_all() { for b in "${cmds[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi

cache_lock "$out" "the node binaries"
if have_all; then echo "$out"; exit 0; fi

# shellcheck source=go-toolchain.sh
. "$here/go-toolchain.sh"
ensure_go
kube_build "$out" "${cmds[@]}"
have_all
echo "$out"
