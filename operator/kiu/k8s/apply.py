"""Server-side apply of the objects kiu owns, and deletion of the ones it no longer needs.

Field manager `kiu`, forced: kiu is the only writer of the fields it sets (a
conflict means someone edited a managed field by hand, and the spec wins), while
fields kiu does not set stay with whoever set them. Applying an unchanged object
is a no-op on the server: same resourceVersion, no rollout, no restarted unit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client as k8s_client

from kiu.k8s import errors, rest

FIELD_MANAGER = "kiu"

#: (apiVersion, kind) -> collection path template of the kinds kiu applies.
_COLLECTIONS = {
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{namespace}/deployments",
    ("v1", "Service"): "/api/v1/namespaces/{namespace}/services",
    (
        "policy/v1",
        "PodDisruptionBudget",
    ): "/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets",
}
KINDS = {kind: api_version for api_version, kind in _COLLECTIONS}


def _path(*, api_version: str, kind: str, namespace: str, name: str) -> str:
    return f"{_COLLECTIONS[api_version, kind].format(namespace=namespace)}/{name}"


async def apply(api: k8s_client.ApiClient, *, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Apply `obj` (a complete manifest) and return the object as stored."""
    meta = obj["metadata"]
    return await rest.call(
        api,
        method="PATCH",
        path=_path(
            api_version=obj["apiVersion"],
            kind=obj["kind"],
            namespace=meta["namespace"],
            name=meta["name"],
        ),
        query={"fieldManager": FIELD_MANAGER, "force": True},
        body=obj,
        content_type=rest.APPLY_PATCH,
    )


async def delete(
    api: k8s_client.ApiClient, *, kind: str, namespace: str, name: str, uid: str
) -> None:
    """Delete one object, only if it is still the one with `uid`; gone already is fine."""
    with contextlib.suppress(errors.NotFound):
        await rest.call(
            api,
            method="DELETE",
            path=_path(api_version=KINDS[kind], kind=kind, namespace=namespace, name=name),
            body={"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
        )
