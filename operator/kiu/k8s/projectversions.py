"""Writes to ProjectVersions on behalf of the gateway.

Start/StopProjectVersion change only ``spec.state`` and the unit range, by JSON
merge patch: the rest of the spec stays with whoever wrote it (GitOps
included), and the operator turns the change into units and status as for any
edit. The activation signal of a model scaled to zero is one annotation
(:data:`ACTIVATION_ANNOTATION`), also merge-patched: the spec and its
generation do not change, and writing it again from another gateway replica
only moves the time forward.
"""

from __future__ import annotations

from datetime import UTC, datetime
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


#: When a gateway last had a call for the model and no ready unit (RFC 3339, microseconds).
ACTIVATION_ANNOTATION = "kiu.dev/activation-requested-at"


def activation_time(moment: float) -> str:
    """The annotation's value for ``moment`` (seconds since the epoch)."""
    return datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def activation_requested_at(metadata: Any) -> float | None:
    """The time in a ProjectVersion's activation annotation, None if absent or malformed."""
    raw = ((metadata or {}).get("annotations") or {}).get(ACTIVATION_ANNOTATION)
    if not isinstance(raw, str):
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


async def request_activation(
    api: k8s_client.ApiClient, *, namespace: str, name: str, at: float
) -> None:
    """Ask the operator for a unit of a model at zero: annotate it with the time ``at``.

    Raises :class:`kiu.k8s.errors.NotFound` if the ProjectVersion is gone.
    """
    await rest.call(
        api,
        method="PATCH",
        path=path(namespace=namespace, name=name),
        body={"metadata": {"annotations": {ACTIVATION_ANNOTATION: activation_time(at)}}},
        content_type=rest.MERGE_PATCH,
    )
