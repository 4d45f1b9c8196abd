#!/usr/bin/env bash
# End-to-end on kind, for machines with Docker: builds the image, installs the Helm chart, runs a
# PostgreSQL in the cluster with a non-superuser admin, and checks that a tenant's Secret logs in
# from a pod through envFrom. Needs docker, kind, kubectl and helm on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=${KIND_CLUSTER:-tenantdb-e2e}
for t in docker kind kubectl helm; do command -v "$t" >/dev/null || { echo "kind-e2e: $t is required" >&2; exit 1; }; done

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
docker build -t tenantdb:e2e .
kind load docker-image tenantdb:e2e --name "$cluster"
helm upgrade --install tenantdb charts/tenantdb -n tenantdb-system --create-namespace \
  --set image.repository=tenantdb --set image.tag=e2e --set image.pullPolicy=Never --set replicas=2 --wait

admin_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
kubectl -n tenantdb-system create secret generic pg-admin --from-literal=username=tenantdb_admin \
  --from-literal=password="$admin_pw" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: postgres, namespace: tenantdb-system, labels: {app: postgres}}
spec:
  containers:
    - name: postgres
      image: postgres:16
      env:
        - {name: POSTGRES_PASSWORD, value: "super-$admin_pw"}
        - {name: POSTGRES_INITDB_ARGS, value: "--auth=scram-sha-256"}
      ports: [{containerPort: 5432}]
      readinessProbe: {exec: {command: ["pg_isready", "-U", "postgres"]}}
---
apiVersion: v1
kind: Service
metadata: {name: postgres, namespace: tenantdb-system}
spec: {selector: {app: postgres}, ports: [{port: 5432}]}
YAML
kubectl -n tenantdb-system wait pod/postgres --for=condition=Ready --timeout=180s
kubectl -n tenantdb-system exec postgres -- psql -U postgres -c \
  "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='tenantdb_admin') THEN CREATE ROLE tenantdb_admin LOGIN CREATEDB CREATEROLE; END IF; END \$\$; ALTER ROLE tenantdb_admin PASSWORD '$admin_pw';"
kubectl apply -f - <<YAML
apiVersion: tenantdb.dev/v1alpha1
kind: PostgresServer
metadata: {name: default}
spec:
  host: postgres.tenantdb-system.svc
  sslMode: disable
  default: true
  adminSecretRef: {namespace: tenantdb-system, name: pg-admin}
  allowedExtensions: [pgcrypto, citext]
YAML
kubectl wait pgs/default --for=condition=Ready --timeout=120s
kubectl apply -f deploy/examples/
kubectl -n team-a wait tdb/orders --for=condition=Ready --timeout=120s
kubectl -n team-b wait tdb/storefront --for=condition=Ready --timeout=120s
kubectl -n team-a delete pod psql-check --ignore-not-found
kubectl -n team-a run psql-check --image=postgres:16 --restart=Never \
  --overrides='{"spec":{"containers":[{"name":"psql-check","image":"postgres:16","command":["psql","-XAtc","select current_user"],"envFrom":[{"secretRef":{"name":"orders-db"}}]}]}}'
kubectl -n team-a wait pod/psql-check --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s
test "$(kubectl -n team-a logs psql-check)" = team_a_orders
echo "kind-e2e: passed (delete the cluster with: kind delete cluster --name $cluster)"
