# The one place the test control plane's versions are fixed.
KUBE_VERSION=v1.34.4
ETCD_VERSION=v3.6.16
