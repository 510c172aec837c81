"""Kubernetes Events about ProjectVersions, aggregated like kubectl and client-go expect.

A repeat of the same reason and message for the same object within the
aggregation window bumps `count` and `lastTimestamp` of the existing Event
instead of creating another, so a resource that stays broken does not flood the
namespace. Posting is best effort: a failed post is logged, never raised, so it
cannot fail a reconcile.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from kubernetes_asyncio import client as k8s_client

from kiu.k8s import errors, rest

logger = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]

_MESSAGE_LIMIT = 1024
_REMEMBERED = 4096


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


@dataclass(slots=True)
class _Posted:
    name: str
    count: int
    at: float


def _time(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Recorder:
    """Posts core/v1 Events as `component` (the Events' source and reporting controller)."""

    def __init__(
        self,
        api: k8s_client.ApiClient,
        *,
        component: str,
        instance: str,
        window: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._component = component
        self._instance = instance
        self._window = window
        self._clock = clock
        self._posted: OrderedDict[tuple[str, str, str, str], _Posted] = OrderedDict()

    async def post(self, *, ref: ObjectRef, type: EventType, reason: str, message: str) -> None:
        message = (
            message if len(message) <= _MESSAGE_LIMIT else message[: _MESSAGE_LIMIT - 3] + "..."
        )
        now = self._clock()
        key = (ref.uid, type, reason, message)
        try:
            if await self._bump(key=key, namespace=ref.namespace, now=now):
                return
            stamp = _time(now)
            created = await rest.call(
                self._api,
                method="POST",
                path=f"/api/v1/namespaces/{ref.namespace}/events",
                body={
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
                    "involvedObject": {
                        "apiVersion": ref.api_version,
                        "kind": ref.kind,
                        "namespace": ref.namespace,
                        "name": ref.name,
                        "uid": ref.uid,
                    },
                    "type": type,
                    "reason": reason,
                    "message": message,
                    "count": 1,
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "source": {"component": self._component},
                    "reportingComponent": self._component,
                    "reportingInstance": self._instance,
                },
            )
            self._posted[key] = _Posted(name=created["metadata"]["name"], count=1, at=now)
            while len(self._posted) > _REMEMBERED:
                self._posted.popitem(last=False)
        except errors.KubernetesError as exc:
            logger.warning(
                "posting event %s for %s/%s failed: %s", reason, ref.namespace, ref.name, exc
            )

    async def _bump(self, *, key: tuple[str, str, str, str], namespace: str, now: float) -> bool:
        """Count a repeat on the Event posted for `key`; False if there is none to count on."""
        seen = self._posted.get(key)
        if seen is None or now - seen.at >= self._window:
            return False
        try:
            await rest.call(
                self._api,
                method="PATCH",
                path=f"/api/v1/namespaces/{namespace}/events/{seen.name}",
                body={"count": seen.count + 1, "lastTimestamp": _time(now)},
                content_type=rest.MERGE_PATCH,
            )
        except errors.NotFound:
            del self._posted[key]  # expired (Events have a TTL): post a new one
            return False
        seen.count += 1
        seen.at = now
        self._posted.move_to_end(key)
        return True
