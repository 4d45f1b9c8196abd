#!/usr/bin/env bash
# Builds the kubectl tenantdb release tarball (the compiled plugin with its production
# dependencies) and a krew manifest for it with the tarball's sha256:
#   dist-plugin/kubectl-tenantdb-v<version>.tar.gz and dist-plugin/tenantdb.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
version="v$(node -p 'require("./package.json").version')"
out=dist-plugin
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
npm run --silent build
mkdir -p "$stage/kubectl-tenantdb" "$out"
cp -r dist package.json package-lock.json README.md "$stage/kubectl-tenantdb/"
(cd "$stage/kubectl-tenantdb" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error && rm package-lock.json)
chmod +x "$stage/kubectl-tenantdb/dist/cli/kubectl-tenantdb.js" "$stage/kubectl-tenantdb/dist/cli/kubectl_complete-tenantdb.js"
tarball="$out/kubectl-tenantdb-$version.tar.gz"
tar -C "$stage" -czf "$tarball" kubectl-tenantdb
sum="$(sha256sum "$tarball" | cut -d' ' -f1)"
sed -e "s/^  version: .*/  version: $version/" \
  -e "s#releases/download/[^/]*/kubectl-tenantdb-[^/]*\.tar\.gz#releases/download/$version/kubectl-tenantdb-$version.tar.gz#" \
  -e "s/sha256: .*/sha256: '$sum'/" deploy/krew/tenantdb.yaml >"$out/tenantdb.yaml"
echo "$tarball ($sum)"
echo "$out/tenantdb.yaml"
