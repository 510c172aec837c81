#!/usr/bin/env bash
# Delete the kind cluster hack/kind-up.sh created (KIU_KIND_CLUSTER, default kiu).
set -euo pipefail
CLUSTER="${KIU_KIND_CLUSTER:-kiu}"
command -v kind >/dev/null || { echo "kind-down: kind is not on PATH" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind delete cluster --name "$CLUSTER"
else
    echo "no kind cluster named $CLUSTER"
fi
