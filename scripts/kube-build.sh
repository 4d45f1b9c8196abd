# Sourced by build-control-plane.sh and build-node.sh: builds commands of k8s.io/kubernetes at
# $KUBE_VERSION into a folder, through a throw-away wrapper module.
#
# Why a wrapper module: k8s.io/kubernetes replaces every staging module (k8s.io/api, apimachinery,
# client-go, ...) with ./staging/..., so `go install` of its commands fails. A module that requires
# k8s.io/kubernetes and pins each staging module to its published v0.X.Y builds them.

# kube_build OUT CMD...: builds each k8s.io/kubernetes/cmd/CMD missing from OUT into OUT/CMD.
kube_build() {
  local out=$1
  shift
  local missing=() c
  for c in "$@"; do [ -x "$out/$c" ] || missing+=("$c"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "building ${missing[*]} $KUBE_VERSION (many minutes on a cold Go build cache)" >&2
  local work kminor stage kgomod ld p
  work=$(mktemp -d)
  kminor=${KUBE_VERSION#v1.} # 34.4
  stage="v0.$kminor"         # v0.34.4
  (
    set -euo pipefail
    trap 'rm -rf "$work"' EXIT
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
    cd "$work"
    go mod init tenantdb.local/k8sbuild >/dev/null 2>&1
    go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >dl.json
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
    } >go.mod
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for c in "${missing[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
      printf ')\n'
    } >tools.go
    go mod tidy -e >/dev/null 2>&1 || true
    ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=${kminor%%.*} -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    for c in "${missing[@]}"; do
      go build -trimpath -ldflags "$ld" -o "$out/$c.tmp.$$" "k8s.io/kubernetes/cmd/$c"
      mv "$out/$c.tmp.$$" "$out/$c"
    done
  )
}

# cache_lock DIR WHAT: one build of DIR at a time; the others wait for it (fd 9 holds the lock).
cache_lock() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  if ! flock -n 9; then
    echo "waiting for another build of $2 to finish" >&2
    flock 9
  fi
}
