"""Leader election on a coordination.k8s.io Lease, as client-go does it.

Two operator replicas may run; only the holder of the Lease acts. A candidate
takes the Lease once its holder has not renewed it for the lease duration,
measured on the candidate's own clock from when it last saw the record change
(so clock skew between nodes does not matter). A holder that cannot renew within
the renew deadline, which is shorter than the lease duration, gives up before
anyone else may take over: there is never more than one acting replica.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as k8s_client

from kiu.k8s import errors, rest

logger = logging.getLogger(__name__)


class LeaseLostError(Exception):
    """This replica no longer holds the Lease and must stop acting at once."""


def _micro_time(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Elector:
    """Acquires, renews and releases one Lease for one identity."""

    api: k8s_client.ApiClient
    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _seen: tuple[Any, ...] | None = field(default=None, init=False)
    _seen_at: float = field(default=0.0, init=False)

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    async def acquire(self) -> None:
        """Wait until this replica holds the Lease."""
        logger.info("waiting for lease %s/%s as %s", self.namespace, self.name, self.identity)
        while True:
            if await self._try():
                break
            await asyncio.sleep(self.retry_period * random.uniform(1.0, 1.2))
        logger.info("acquired lease %s/%s", self.namespace, self.name)

    async def hold(self) -> None:
        """Renew the Lease until that fails for the renew deadline; then raise LeaseLostError."""
        renewed = self.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            try:
                if await self._try():
                    renewed = self.monotonic()
                    continue
                raise LeaseLostError(f"lease {self.namespace}/{self.name} taken by another replica")
            except errors.KubernetesError as exc:
                logger.warning("renewing lease %s/%s failed: %s", self.namespace, self.name, exc)
            if self.monotonic() - renewed >= self.renew_deadline:
                raise LeaseLostError(
                    f"lease {self.namespace}/{self.name} not renewed for {self.renew_deadline:g} s"
                )

    async def release(self) -> None:
        """Hand the Lease over at once on a clean exit, instead of after it expires."""
        try:
            lease = await rest.call(self.api, method="GET", path=f"{self._path}/{self.name}")
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"].update(
                holderIdentity=None, leaseDurationSeconds=1, renewTime=_micro_time(self.wall())
            )
            await rest.call(self.api, method="PUT", path=f"{self._path}/{self.name}", body=lease)
            logger.info("released lease %s/%s", self.namespace, self.name)
        except errors.KubernetesError as exc:
            logger.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, exc)

    async def _try(self) -> bool:
        """One attempt to take or renew the Lease; False while another replica holds it."""
        now = _micro_time(self.wall())
        try:
            lease = await rest.call(self.api, method="GET", path=f"{self._path}/{self.name}")
        except errors.NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(acquired=now, renewed=now, transitions=0),
            }
            try:
                await rest.call(self.api, method="POST", path=self._path, body=body)
            except errors.Conflict:
                return False
            return True

        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or None
        if holder is not None and holder != self.identity and not self._expired(spec):
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            new = self._spec(
                acquired=spec.get("acquireTime") or now, renewed=now, transitions=transitions
            )
        else:
            new = self._spec(acquired=now, renewed=now, transitions=transitions + 1)
        lease["spec"] = new
        try:
            await rest.call(self.api, method="PUT", path=f"{self._path}/{self.name}", body=lease)
        except errors.Conflict:
            return False
        return True

    def _expired(self, spec: dict[str, Any]) -> bool:
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._seen:
            self._seen, self._seen_at = record, self.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        return self.monotonic() - self._seen_at >= duration

    def _spec(self, *, acquired: str, renewed: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.duration),
            "acquireTime": acquired,
            "renewTime": renewed,
            "leaseTransitions": transitions,
        }
