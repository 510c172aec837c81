"""ProjectVersion bodies for the tests: a minimal manifest and what the API server adds."""

from __future__ import annotations

import copy
from typing import Any

from kiu.api import projectversion

CREATED = "2024-05-01T12:00:00Z"
#: spec.inferenceUnit with every placement field set.
PLACEMENT: dict[str, Any] = {
    "runtime": "triton",
    "resources": {"limits": {"nvidia.com/gpu": 1}},
    "nodeSelector": {"kiu.dev/pool": "gpu", "example.com/tier": ""},
    "tolerations": [
        {"key": "kiu.dev/pool", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["l4"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]},
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {
                        "matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]
                    },
                }
            ],
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"kiu.dev/projectversion": "shoes-v3"}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        },
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                    "namespaces": ["cache"],
                    "topologyKey": "topology.kubernetes.io/zone",
                }
            ]
        },
    },
    "priorityClassName": "inference-high",
    "serviceAccountName": "model-reader",
    "runtimeClassName": "nvidia",
    "imagePullSecrets": [{"name": "registry"}],
    "labels": {"team": "retail", "example.com/cost-center": "42"},
    "annotations": {"sidecar.istio.io/inject": "false"},
    "env": [
        {"name": "LOG_VERBOSE", "value": "1"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {
            "name": "MODE",
            "valueFrom": {"configMapKeyRef": {"name": "c", "key": "m", "optional": True}},
        },
    ],
}
CREATED_MS = 1_714_564_800_000


def manifest(**spec: Any) -> dict[str, Any]:
    """The smallest manifest a user can apply, with ``spec`` fields replaced."""
    return {
        "apiVersion": projectversion.API_VERSION,
        "kind": projectversion.KIND,
        "metadata": {"name": "shoes-v3"},
        "spec": {
            "project": "shoes",
            "model": {
                "name": "shoes",
                "repository": "s3://models/retail",
                "task": "ObjectDetection",
            },
            **spec,
        },
    }


def stored(obj: dict[str, Any], *, namespace: str = "retail") -> dict[str, Any]:
    """``obj`` with the metadata the API server sets on create."""
    result = copy.deepcopy(obj)
    result["metadata"] = {
        "namespace": namespace,
        "uid": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        "generation": 1,
        "creationTimestamp": CREATED,
        "resourceVersion": "42",
        "labels": {"team": "retail"},
        **result["metadata"],
    }
    return result
