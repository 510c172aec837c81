"""Writes of the ProjectVersion status subresource, as minimal JSON merge patches.

Only the fields that changed are sent, so a status that matches reality costs no
request at all, and fields written by others (such as kopf's own bookkeeping)
are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client as k8s_client

from kiu.k8s import rest


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns `old` into `new` for the keys of `new`.

    A None value in `new` removes the key. Keys of `old` missing from `new` are
    kept (they may belong to someone else),
    except inside nested objects that `new` also has, where they are removed
    (null) so that for instance a zone that is gone leaves the status.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if value is None:
            if before is not None:
                patch[key] = None  # None in `new` means absent: remove it
            continue
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            nested.update({gone: None for gone in before if gone not in value})
            if nested:
                patch[key] = nested
        elif value != before or key not in old:
            patch[key] = value
    return patch


async def patch(
    api: k8s_client.ApiClient,
    *,
    group: str,
    version: str,
    plural: str,
    namespace: str,
    name: str,
    status: Mapping[str, Any],
) -> dict[str, Any]:
    """Merge-patch `status` into the object's status subresource; returns the stored object."""
    return await rest.call(
        api,
        method="PATCH",
        path=f"/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status",
        body={"status": dict(status)},
        content_type=rest.MERGE_PATCH,
    )
