# Sourced by setup.sh and .ci/run: puts a Go toolchain of at least GO_MIN on PATH.
# An installed go that is new enough is used as it is. An older one (Debian 12's golang-go is 1.19)
# or none at all: the toolchain is fetched as the Go module golang.org/toolchain through the module
# proxy (the same download `GOTOOLCHAIN` makes in Go 1.21+) and cached in ~/.cache/tenantdb.
# 1.25: pgx v5.13 (test/clients/pgx) needs it; the control plane builds with it too.
GO_MIN=1.25
GO_FETCH=go1.25.14

go_version_ok() {
  local v
  v=$("$1" env GOVERSION 2>/dev/null || "$1" version 2>/dev/null | awk '{print $3}')
  v=${v#go}
  [ -n "$v" ] || return 1
  [ "$(printf '%s\n%s\n' "$GO_MIN" "$v" | sort -V | head -n1)" = "$GO_MIN" ]
}

ensure_go() {
  local d
  if ! command -v go >/dev/null; then
    for d in /usr/local/go/bin /usr/lib/go/bin; do [ -x "$d/go" ] && export PATH="$d:$PATH" && break; done
  fi
  if command -v go >/dev/null && go_version_ok go; then return 0; fi
  local cache=${TENANTDB_CACHE:-$HOME/.cache/tenantdb}
  local arch
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) echo "tenantdb: no Go toolchain for $(uname -m)" >&2; return 1 ;; esac
  local root="$cache/go/$GO_FETCH"
  if [ ! -x "$root/bin/go" ]; then
    if ! command -v go >/dev/null; then
      echo "tenantdb: installing Debian's golang-go to fetch Go $GO_FETCH" >&2
      if [ "$(id -u)" = 0 ]; then apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >&2
      elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >&2
      else echo "tenantdb: Go $GO_MIN or newer is needed; install it, or run as root so that it can be installed" >&2; return 1; fi
    fi
    echo "tenantdb: fetching Go $GO_FETCH through the Go module proxy" >&2
    local tmp dir
    tmp=$(mktemp -d)
    dir=$(cd "$tmp" && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOMODCACHE="$tmp/mod" go mod download -json "golang.org/toolchain@v0.0.1-$GO_FETCH.linux-$arch" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
    [ -f "$dir/bin/go" ] || { echo "tenantdb: could not fetch Go $GO_FETCH" >&2; chmod -R u+w "$tmp"; rm -rf "$tmp"; return 1; }
    mkdir -p "$(dirname "$root")"
    rm -rf "$root"
    cp -r "$dir" "$root"
    chmod -R u+w "$root" "$tmp"
    # Module zips keep no file modes: the executables get theirs back, as Go's own switch does.
    chmod +x "$root"/bin/* "$root"/pkg/tool/*/*
    rm -rf "$tmp"
  fi
  export PATH="$root/bin:$PATH"
}
