#!/usr/bin/env bash
# kiu on kind, for users with Docker: a cluster with three workers in three zones, the kiu
# image built and loaded, the chart installed, and the sample ProjectVersion on the cpu
# runtime in namespace demo. Needs docker, kind, kubectl and helm on PATH.
#
#   hack/kind-up.sh                  # cpu runtime (kiu unit)
#   KIU_TRITON=1 hack/kind-up.sh     # also Triton units (pulls nvcr.io/nvidia/tritonserver)
#   hack/kind-down.sh                # delete the cluster
#
# Settings: KIU_KIND_CLUSTER (kiu), KIU_IMAGE (kiu:dev), KIU_TRITON_IMAGE (kiu-triton:dev),
# KIU_NAMESPACE (demo).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIU_KIND_CLUSTER:-kiu}"
IMAGE="${KIU_IMAGE:-kiu:dev}"
TRITON_IMAGE="${KIU_TRITON_IMAGE:-kiu-triton:dev}"
NAMESPACE="${KIU_NAMESPACE:-demo}"
TRITON="${KIU_TRITON:-0}"
SYSTEM=kiu-system
KUBECTL=(kubectl --context "kind-$CLUSTER")

say() { printf '==> %s\n' "$*"; }
for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null || { echo "kind-up: $tool is not on PATH" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind-up: the Docker engine is not reachable" >&2; exit 1; }

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "kind cluster $CLUSTER exists: reusing it"
else
    say "creating kind cluster $CLUSTER (workers in zone-a, zone-b, zone-c)"
    kind create cluster --name "$CLUSTER" --config "$REPO/hack/kind/cluster.yaml" --wait 180s
fi

say "building $IMAGE (docker/kiu/Dockerfile) and loading it into the cluster"
docker build -f "$REPO/docker/kiu/Dockerfile" -t "$IMAGE" "$REPO"
kind load docker-image "$IMAGE" --name "$CLUSTER"

helm_args=()
if [[ "$TRITON" == 1 ]]; then
    say "building $TRITON_IMAGE (docker/triton/Dockerfile, pulls nvcr.io/nvidia/tritonserver)"
    docker build -f "$REPO/docker/triton/Dockerfile" -t "$TRITON_IMAGE" "$REPO"
    kind load docker-image "$TRITON_IMAGE" --name "$CLUSTER"
    helm_args+=(--set "operator.tritonImage=$TRITON_IMAGE")
fi

for namespace in "$SYSTEM" "$NAMESPACE"; do
    "${KUBECTL[@]}" create namespace "$namespace" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
    "${KUBECTL[@]}" label namespace "$namespace" --overwrite \
        pod-security.kubernetes.io/enforce=restricted
done

say "installing charts/kiu into $SYSTEM"
# Plain HTTP, explicitly (gateway.tls.enabled=false): the instructions below call the
# gateway through a plain port-forward.
helm upgrade --install kiu "$REPO/charts/kiu" --kube-context "kind-$CLUSTER" \
    --namespace "$SYSTEM" \
    --set "image.repository=${IMAGE%:*}" --set "image.tag=${IMAGE##*:}" \
    --set image.pullPolicy=Never \
    --set accessKeys.create=true \
    --set 'accessKeys.keys[0].name=demo' \
    --set 'accessKeys.keys[0].accessKeyId=AKIAKIUDEMO000000001' \
    --set "accessKeys.keys[0].namespaces={$NAMESPACE}" \
    --set "networkPolicy.unitNamespaces={$NAMESPACE}" \
    --set gateway.tls.enabled=false \
    ${helm_args[@]+"${helm_args[@]}"} \
    --wait --timeout 5m

say "applying examples/shapes-classifier.yaml to $NAMESPACE"
"${KUBECTL[@]}" apply -n "$NAMESPACE" -f "$REPO/examples/shapes-classifier.yaml"
if [[ "$TRITON" == 1 ]]; then
    "${KUBECTL[@]}" apply -n "$NAMESPACE" -f "$REPO/hack/kind/shapes-classifier-triton.yaml"
fi
"${KUBECTL[@]}" wait -n "$NAMESPACE" pjv/shapes-classifier \
    --for=jsonpath='{.status.status}'=RUNNING --timeout=300s
"${KUBECTL[@]}" get pjv -n "$NAMESPACE"

cat <<EOT

kiu runs on kind cluster $CLUSTER. Try:

  kubectl config use-context kind-$CLUSTER
  kubectl get pjv -n $NAMESPACE
  kubectl get pods -n $NAMESPACE -L topology.kubernetes.io/zone -o wide
  kubectl port-forward -n $SYSTEM svc/kiu-gateway 8080:8080 &
  export KIU_GATEWAY=http://127.0.0.1:8080 AWS_ACCESS_KEY_ID=AKIAKIUDEMO000000001
  export AWS_SECRET_ACCESS_KEY=\$(kubectl get secret -n $SYSTEM kiu-access-key-demo \\
      -o jsonpath='{.data.secretAccessKey}' | base64 -d)
  (then the boto3 snippet that helm printed, with region_name="$NAMESPACE")

  hack/kind-down.sh    # delete the cluster
EOT
