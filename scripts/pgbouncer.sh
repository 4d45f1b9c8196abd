#!/usr/bin/env bash
# Sourced by setup.sh: makes a PgBouncer of at least PGBOUNCER_MIN available to the tests, the
# sandbox and the benchmarks, and prints nothing. Prepared statements in transaction pooling
# (max_prepared_statements, 1.21) and per-database client caps (max_db_client_connections, 1.24)
# need a newer PgBouncer than Debian 12's 1.18.
#
# An installed pgbouncer that is new enough is used as it is. Otherwise Debian stable's package is
# unpacked (mmdebstrap --variant=extract: no maintainer scripts, the host's apt sources untouched)
# into a cache readable by the postgres user, which runs PgBouncer in the tests, with a wrapper
# that starts it through the tree's own dynamic loader (its libc is newer than the host's).
PGBOUNCER_MIN=1.24

pgbouncer_version_ok() {
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/^PgBouncer \([0-9.]*\).*/\1/p' | head -n1)
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$PGBOUNCER_MIN" "$v" | sort -V | head -n1)" = "$PGBOUNCER_MIN" ]
}

pgbouncer_cache_dir() {
  # Under /root the postgres user could not reach the tree: as root, a world-readable cache.
  if [ "$(id -u)" = 0 ]; then echo "${TENANTDB_PGBOUNCER_CACHE:-/var/cache/tenantdb/pgbouncer}"; else echo "${TENANTDB_PGBOUNCER_CACHE:-${TENANTDB_CACHE:-$HOME/.cache/tenantdb}/pgbouncer}"; fi
}

# Whether a new enough PgBouncer is installed or cached already.
pgbouncer_present() {
  local p
  for p in /usr/sbin/pgbouncer /usr/bin/pgbouncer "$(pgbouncer_cache_dir)/bin/pgbouncer"; do [ -x "$p" ] && pgbouncer_version_ok "$p" && return 0; done
  return 1
}

ensure_pgbouncer() {
  if [ -n "${TENANTDB_PGBOUNCER:-}" ]; then
    pgbouncer_version_ok "$TENANTDB_PGBOUNCER" && return 0
    echo "tenantdb: TENANTDB_PGBOUNCER=$TENANTDB_PGBOUNCER is not PgBouncer $PGBOUNCER_MIN or newer" >&2
    return 1
  fi
  pgbouncer_present && return 0
  command -v mmdebstrap >/dev/null || { echo "tenantdb: mmdebstrap is needed to fetch PgBouncer $PGBOUNCER_MIN+ (apt-get install mmdebstrap)" >&2; return 1; }
  local dir
  dir=$(pgbouncer_cache_dir)
  local mirror
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\?\([^ ]*\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1 || true)
  [ -n "$mirror" ] || { echo "tenantdb: no Debian mirror found in the apt sources, needed to fetch PgBouncer $PGBOUNCER_MIN+" >&2; return 1; }
  echo "tenantdb: fetching PgBouncer from Debian stable (the installed one is older than $PGBOUNCER_MIN)" >&2
  mkdir -p "$(dirname "$dir")"
  local tmp="$dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # The mirror is passed explicitly: without it mmdebstrap adds the -updates and -security suites.
  mmdebstrap --quiet --variant=extract --include=pgbouncer stable "$tmp/root" "$mirror" >&2
  local loader libdir
  loader=
  local f
  for f in "$tmp"/root/usr/lib/*/ld-linux-*.so.* "$tmp"/root/lib64/ld-linux-*.so.*; do
    [ -e "$f" ] && loader=${f#"$tmp/root/"} && break
  done
  libdir=$(dirname "${loader:-.}")
  [ -n "$loader" ] && [ -x "$tmp/root/usr/sbin/pgbouncer" ] || { echo "tenantdb: the PgBouncer package could not be unpacked" >&2; rm -rf "$tmp"; return 1; }
  mkdir -p "$tmp/bin"
  cat >"$tmp/bin/pgbouncer" <<WRAP
#!/bin/sh
# PgBouncer from Debian stable, run through that tree's own loader and libraries.
exec "$dir/root/$loader" --library-path "$dir/root/$libdir" "$dir/root/usr/sbin/pgbouncer" "\$@"
WRAP
  chmod -R a+rX "$tmp"
  chmod 755 "$tmp/bin/pgbouncer"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  chmod a+rx "$(dirname "$dir")"
  pgbouncer_version_ok "$dir/bin/pgbouncer" || { echo "tenantdb: the fetched PgBouncer does not run: $("$dir/bin/pgbouncer" --version 2>&1 | head -n1)" >&2; return 1; }
}
