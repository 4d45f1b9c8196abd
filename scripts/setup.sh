#!/usr/bin/env bash
# Everything `npm test` and `npm run dev` need before they start, done once and reused:
# npm packages (when missing or older than the lock file) and the cached control-plane binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x node_modules/.bin/jest ] || [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "tenantdb: installing npm packages" >&2
  # npm install, not npm ci: npm 11 rejects this lock file in ci for the optional platform packages
  # of unrs-resolver (a jest dependency) it records for this platform only; install keeps the locked versions.
  npm install --no-audit --no-fund >&2
fi

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v go >/dev/null || missing+=("go (1.24 or newer)")
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${TENANTDB_PG_BIN:-}" ]; then
  missing+=("PostgreSQL server binaries (Debian: postgresql)")
fi
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null || [ -n "${TENANTDB_PGBOUNCER:-}" ] || missing+=("PgBouncer (Debian: pgbouncer)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "tenantdb: missing on this machine: ${missing[*]}" >&2
  echo "  On Debian/Ubuntu: sudo apt-get install -y openssl postgresql pgbouncer golang-go (or Go from its own installer)" >&2
  exit 1
fi

bash scripts/build-control-plane.sh >/dev/null
