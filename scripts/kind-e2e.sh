#!/usr/bin/env bash
# End to end on kind, for machines with Docker: the checks of `npm run test:cluster`
# (test/cluster/node.test.ts) against a kind cluster instead of this project's real node.
# This script makes what differs (test/cluster/target.ts): a new kind cluster, the two images built
# from Dockerfile and Dockerfile.pgbouncer and loaded onto its node with postgres:16 (PostgreSQL for
# the tenants, in a pod, with a non-superuser admin; psql for the application pods). The tests then
# install the chart as on the real node (test/cluster/kind-target.ts) and run.
# Needs docker, kind (a node image of Kubernetes 1.31 or newer), kubectl, helm, node and npm.
# The cluster is deleted at the end unless TENANTDB_KIND_KEEP=1. Arguments go to jest.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=${KIND_CLUSTER:-tenantdb-e2e}
tag=e2e
pg_image=${TENANTDB_E2E_PG_IMAGE:-postgres:16}
pg_ns=tenantdb-e2e-pg
for t in docker kind kubectl helm node npm; do command -v "$t" >/dev/null || { echo "kind-e2e: $t is required" >&2; exit 1; }; done
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "kind-e2e: a kind cluster named $cluster exists already: delete it (kind delete cluster --name $cluster) or set KIND_CLUSTER" >&2
  exit 1
fi

work=$(mktemp -d)
export KUBECONFIG=$work/kubeconfig
cleanup() {
  if [ "${TENANTDB_KIND_KEEP:-}" = 1 ]; then
    cp "$KUBECONFIG" "./kind-$cluster.kubeconfig" 2>/dev/null || true
    echo "kind-e2e: kept the cluster (kubeconfig: ./kind-$cluster.kubeconfig; delete it with: kind delete cluster --name $cluster)" >&2
  else
    kind delete cluster --name "$cluster" --kubeconfig "$KUBECONFIG" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Its own kubeconfig file: the user's ~/.kube/config is left alone.
kind create cluster --name "$cluster" --kubeconfig "$KUBECONFIG" --wait 120s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}

docker build -t "tenantdb:$tag" .
docker build -t "tenantdb-pgbouncer:$tag" - <Dockerfile.pgbouncer
docker image inspect "$pg_image" >/dev/null 2>&1 || docker pull "$pg_image"
# Every pod of the tests runs an image already on the node (imagePullPolicy Never), as on the real node.
kind load docker-image --name "$cluster" "tenantdb:$tag" "tenantdb-pgbouncer:$tag" "$pg_image"

# PostgreSQL in its own namespace (its image starts as root: not in a restricted one). Other pods log
# in with SCRAM; inside its pod the socket is trusted, which the tests' superuser queries use.
admin_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
kubectl create namespace "$pg_ns"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: postgres, namespace: $pg_ns, labels: {app: postgres}}
spec:
  containers:
    - name: postgres
      image: $pg_image
      imagePullPolicy: Never
      env:
        - {name: POSTGRES_PASSWORD, value: "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"}
        - {name: POSTGRES_HOST_AUTH_METHOD, value: scram-sha-256}
      ports: [{containerPort: 5432}]
      # Over TCP: the server of the image's first-start scripts listens on its socket only.
      readinessProbe: {exec: {command: ["pg_isready", "-h", "127.0.0.1", "-U", "postgres"]}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: postgres, namespace: $pg_ns}
spec: {selector: {app: postgres}, ports: [{port: 5432}]}
YAML
kubectl -n "$pg_ns" wait pod/postgres --for=condition=Ready --timeout=180s
kubectl -n "$pg_ns" exec postgres -- psql -U postgres -v ON_ERROR_STOP=1 -XAtqc \
  "CREATE ROLE tenantdb_admin LOGIN CREATEDB CREATEROLE PASSWORD '$admin_pw'"

[ -x node_modules/.bin/jest ] || npm install --no-audit --no-fund
TENANTDB_E2E_TARGET=kind \
  TENANTDB_E2E_APP_IMAGE="tenantdb:$tag" \
  TENANTDB_E2E_PGBOUNCER_IMAGE="tenantdb-pgbouncer:$tag" \
  TENANTDB_E2E_CLIENT_IMAGE="$pg_image" \
  TENANTDB_E2E_PG_HOST="postgres.$pg_ns.svc" \
  TENANTDB_E2E_PG_PORT=5432 \
  TENANTDB_E2E_PG_ADMIN_USER=tenantdb_admin \
  TENANTDB_E2E_PG_ADMIN_PASSWORD="$admin_pw" \
  TENANTDB_E2E_PG_POD="$pg_ns/postgres" \
  TENANTDB_HELM="$(command -v helm)" \
  NODE_OPTIONS=--experimental-vm-modules \
  node_modules/.bin/jest -c jest.cluster.config.js --runInBand --forceExit "$@"
echo "kind-e2e: passed"
