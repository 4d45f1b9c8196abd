#!/usr/bin/env bash
# Everything `npm test`, `npm run dev` and the benchmarks need before they start, done once and
# reused: Debian packages (PostgreSQL server and client, PgBouncer, openssl, the clients tested
# through the pooler), a Go toolchain new enough for the control plane and the Go clients, npm
# packages (when missing or older than the lock file) and the cached control-plane binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=pgbouncer.sh
. scripts/pgbouncer.sh

# --- Debian packages ---------------------------------------------------------------------------
pkgs=()
command -v openssl >/dev/null || pkgs+=(openssl)
command -v psql >/dev/null || pkgs+=(postgresql-client)
# The Argo CD health check (Lua) is run by a unit test in a real Lua interpreter.
command -v lua5.4 >/dev/null || pkgs+=(lua5.4)
# psycopg 3 (prepares statements on the server by itself) is one of the clients tested through the pooler;
# Debian's, so the test runs /usr/bin/python3 whatever python3 comes first on PATH.
/usr/bin/python3 -c 'import psycopg' 2>/dev/null || pkgs+=(python3-psycopg)
# So is pgjdbc, Debian's jar, run by a JRE as a single-file Java program.
command -v java >/dev/null || pkgs+=(default-jre-headless)
[ -f /usr/share/java/postgresql.jar ] || pkgs+=(libpostgresql-jdbc-java)
if [ -z "${TENANTDB_PG_BIN:-}" ] && ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then pkgs+=(postgresql); fi
# PgBouncer itself comes from Debian stable when the installed one is too old (scripts/pgbouncer.sh).
if [ -z "${TENANTDB_PGBOUNCER:-}" ] && ! command -v mmdebstrap >/dev/null && ! pgbouncer_present; then pkgs+=(mmdebstrap); fi
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "tenantdb: installing ${pkgs[*]}" >&2
  if [ "$(id -u)" = 0 ]; then as_root=(); elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as_root=(sudo); else
    echo "tenantdb: missing ${pkgs[*]}; run as root or with sudo, or install them: apt-get install -y ${pkgs[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq >&2
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi

ensure_pgbouncer

# --- Go, 1.25 or newer, for the control plane and the Go clients -----------------------------------
# shellcheck source=go-toolchain.sh
. scripts/go-toolchain.sh
ensure_go

# --- npm packages ----------------------------------------------------------------------------------
if [ ! -x node_modules/.bin/jest ] || [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "tenantdb: installing npm packages" >&2
  # npm install, not npm ci: it keeps the locked versions and adds what this platform needs.
  npm install --no-audit --no-fund >&2
fi

bash scripts/build-control-plane.sh >/dev/null
# The Go clients tested through the pooler (test/clients), cached by a hash of their sources.
bash scripts/build-clients.sh >/dev/null
# helm renders, lints and dry-runs the chart in the integration tests (test/integration/chart.test.ts).
bash scripts/build-helm.sh >/dev/null
