"""Writes to ProjectVersions on behalf of the compatible API (Start/StopProjectVersion).

Only ``spec.state`` and the unit range change, by JSON merge patch: the rest of
the spec stays with whoever wrote it (GitOps included), and the operator turns
the change into units and status as for any edit.
"""

from __future__ import annotations

from typing import Any, Literal

from kubernetes_asyncio import client as k8s_client

from kiu.api import projectversion
from kiu.k8s import discovery, rest


def path(*, namespace: str | None = None, name: str | None = None) -> str:
    """The API path of the ProjectVersions of a namespace (or all), or of one."""
    base = discovery.collection(
        group=projectversion.GROUP,
        version=projectversion.VERSION,
        plural=projectversion.PLURAL,
        namespace=namespace,
    )
    return f"{base}/{name}" if name else base


async def set_state(
    api: k8s_client.ApiClient,
    *,
    namespace: str,
    name: str,
    state: Literal["Running", "Stopped"],
    min_units: int | None = None,
    max_units: int | None = None,
) -> dict[str, Any]:
    """Set ``spec.state``; when starting, also min and max (``None`` max removes it).

    Raises :class:`kiu.k8s.errors.NotFound` if the ProjectVersion is gone.
    """
    spec: dict[str, Any] = {"state": state}
    if state == "Running" and min_units is not None:
        spec["minInferenceUnits"] = min_units
        spec["maxInferenceUnits"] = max_units
    return await rest.call(
        api,
        method="PATCH",
        path=path(namespace=namespace, name=name),
        body={"spec": spec},
        content_type=rest.MERGE_PATCH,
    )
