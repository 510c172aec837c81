"""List and watch: the objects of one collection as a stream of snapshots and changes.

:func:`reflect` lists a collection, yields a :class:`Listed` snapshot, then
watches from the list's resourceVersion and yields each :class:`Changed`
object. It resumes a dropped watch from the last resourceVersion seen
(bookmarks included), lists again when the API answers 410 Gone, and backs off
while the API is unreachable, so the consumer only ever sees a consistent
state: a new ``Listed`` replaces everything it knew. Objects are plain dicts,
as the API serves them.

Typed readers of the objects the gateway watches sit beside it:
:func:`endpoint_slice` (ready units of a Service) and :func:`node_zone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio import client as k8s_client

from kiu.k8s import errors, rest

log = logging.getLogger(__name__)

ZONE_LABEL = "topology.kubernetes.io/zone"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_WATCH_SECONDS = 290
_MAX_BACKOFF = 30.0


@dataclass(frozen=True, slots=True)
class Listed:
    """Every object of the collection now: replaces all earlier state."""

    items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Changed:
    """One object added, modified or deleted."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: dict[str, Any]


def collection(*, group: str, version: str, plural: str, namespace: str | None = None) -> str:
    """The API path of a collection, cluster-wide or in one namespace."""
    base = "/api/v1" if group == "" else f"/apis/{group}/{version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


async def reflect(
    api: k8s_client.ApiClient,
    path: str,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> AsyncIterator[Listed | Changed]:
    """List, then watch, forever; see the module docstring."""
    query: dict[str, str | int | bool] = {}
    if label_selector:
        query["labelSelector"] = label_selector
    if field_selector:
        query["fieldSelector"] = field_selector
    backoff = 0.5
    version: str | None = None
    while True:
        try:
            if version is None:
                listing = await rest.call(api, method="GET", path=path, query=query)
                version = str(listing.get("metadata", {}).get("resourceVersion", ""))
                yield Listed([dict(item) for item in listing.get("items", [])])
            async with contextlib.aclosing(
                _watch(api, path, query=query, version=version)
            ) as events:
                async for event in events:
                    obj = event["object"]
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event["type"] != "BOOKMARK":
                        yield Changed(event["type"], obj)
            backoff = 0.5
        except errors.Gone:
            log.info("watch of %s expired; listing again", path)
            version = None
        except errors.KubernetesError as exc:
            if isinstance(exc, errors.Unavailable | errors.Unauthorized):
                log.warning("list/watch of %s failed (%s); retrying in %.1fs", path, exc, backoff)
            else:
                log.error("list/watch of %s failed (%s); retrying in %.1fs", path, exc, backoff)
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, _MAX_BACKOFF)


async def _watch(
    api: k8s_client.ApiClient, path: str, *, query: Mapping[str, str | int | bool], version: str
) -> AsyncGenerator[dict[str, Any], None]:
    params = [
        *query.items(),
        ("watch", "true"),
        ("resourceVersion", version),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", _WATCH_SECONDS),
    ]
    try:
        response = await api.call_api(
            path,
            "GET",
            query_params=params,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(
                sock_connect=10.0, sock_read=_WATCH_SECONDS + 30.0
            ),
        )
    except k8s_client.ApiException as exc:
        raise errors.from_api_exception(exc) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise errors.Unavailable(f"watch {path}: {exc or type(exc).__name__}") from exc
    try:
        if response.status != 200:
            raise errors.from_status(response.status, await response.read())
        buffer = b""
        try:
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, _, buffer = buffer.partition(b"\n")
                    if line.strip():
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object", {})
                            raise errors.from_status(int(status.get("code") or 500), status)
                        yield event
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise errors.Unavailable(f"watch {path} broke: {exc or type(exc).__name__}") from exc
    finally:
        response.close()


# --- typed readers ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """One endpoint of a Service: a unit's address, port and zone."""

    host: str
    port: int
    zone: str
    ready: bool


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str
    labels: Mapping[str, str]
    addresses: tuple[Address, ...]


def endpoint_slice(body: Mapping[str, Any], *, port_name: str, default_port: int) -> EndpointSlice:
    """The endpoints of one EndpointSlice on the port named ``port_name``.

    Ready follows the API's rule: an absent ``ready`` condition counts as ready,
    a terminating endpoint is never ready.
    """
    metadata = body.get("metadata", {})
    labels = metadata.get("labels") or {}
    port = default_port
    for candidate in body.get("ports") or []:
        if candidate.get("name") == port_name and candidate.get("port"):
            port = int(candidate["port"])
            break
    addresses = []
    for endpoint in body.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        ready = conditions.get("ready") is not False and conditions.get("terminating") is not True
        for host in (endpoint.get("addresses") or [])[:1]:
            addresses.append(Address(host, port, endpoint.get("zone") or "", ready))
    return EndpointSlice(
        namespace=metadata.get("namespace", ""),
        name=metadata.get("name", ""),
        service=labels.get(SERVICE_NAME_LABEL, ""),
        labels=labels,
        addresses=tuple(addresses),
    )


async def node_zone(api: k8s_client.ApiClient, *, node: str) -> str:
    """The ``topology.kubernetes.io/zone`` label of a node ("" if it has none)."""
    body = await rest.call(api, method="GET", path=f"/api/v1/nodes/{node}")
    return str((body.get("metadata", {}).get("labels") or {}).get(ZONE_LABEL, ""))
