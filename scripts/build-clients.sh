#!/usr/bin/env bash
# Builds the Go client programs the integration tests run against the pooler (test/clients/<name>,
# each its own module with a committed go.sum) and caches each binary outside the repository,
# keyed by a hash of its sources: a changed program is rebuilt, an unchanged one reused. Modules
# come through the Go module proxy of the environment. Prints the path of each binary, one a line,
# in the order asked (all Go clients when none is named).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=${TENANTDB_CACHE:-$HOME/.cache/tenantdb}/clients
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for m in "$root"/test/clients/*/go.mod; do names+=("$(basename "$(dirname "$m")")"); done
fi

for name in "${names[@]}"; do
  src="$root/test/clients/$name"
  [ -f "$src/go.mod" ] || { echo "tenantdb: no Go client $name (test/clients/$name/go.mod)" >&2; exit 1; }
  hash=$(cd "$src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
  out="$cache/$name-$hash"
  if [ ! -x "$out" ]; then
    mkdir -p "$cache"
    exec 9>"$cache/.lock"
    if ! flock -n 9; then
      echo "waiting for another build of the clients to finish" >&2
      flock 9
    fi
    if [ ! -x "$out" ]; then
      # shellcheck source=go-toolchain.sh
      . "$here/go-toolchain.sh"
      ensure_go
      echo "building the $name client" >&2
      # -mod=readonly: the committed go.sum is what is built, and the build never rewrites it.
      (cd "$src" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$out.tmp.$$" .)
      mv "$out.tmp.$$" "$out"
    fi
    exec 9>&-
  fi
  echo "$out"
done
