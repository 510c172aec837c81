#!/usr/bin/env bash
# The local cluster: a real control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy) on the host's loopback and
# pod bridge, and a node agent running pods as processes in network namespaces.
#   hack/cluster.sh up       start (or reuse a healthy cluster); prints KUBECONFIG=<path>
#   hack/cluster.sh down     stop everything it started, remove netns/bridge/rules
#   hack/cluster.sh status   components, nodes, zones down
#   hack/cluster.sh stop|start COMPONENT
#                            stop or start one component of the running cluster
#                            (e.g. kube-apiserver; etcd keeps the state)
# State, certificates, logs: .kiu/ (KIU_STATE_DIR). See hack/README.md.
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HACK")"
PY="${KIU_PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
case "${1:-}" in
up)
    # Warm: a no-op taking well under a second; cold: see hack/README.md.
    "$HACK/build.sh"
    ;;
esac
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
cd "$REPO"
PYTHONPATH="$HACK${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m localcluster "$@"
