"""ProjectVersion bodies for the tests: a minimal manifest and what the API server adds."""

from __future__ import annotations

import copy
from typing import Any

from kiu.api import projectversion

CREATED = "2024-05-01T12:00:00Z"
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
