# The one place the test control plane's versions are fixed.
KUBE_VERSION=v1.34.4
ETCD_VERSION=v3.6.16
# The helm CLI that renders, lints and installs the chart in tests and on the dev cluster.
HELM_VERSION=v4.3.2
