"""The operator's own loops: reconcile workers on a work queue, and the evaluation clock.

kopf delivers watch events; the handlers turn them into keys on the queue. Keys
are reconciled by a few workers, each key by one worker at a time. Every
evaluation period one demand sample is taken for all models and the scaling
policy runs for each; only a changed decision (or demand) queues a reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kiu.controller import demand, metrics, queue, reconciler
from kiu.k8s import errors, observations

logger = logging.getLogger(__name__)

Key = reconciler.Key


@dataclass
class Manager:
    reconciler: reconciler.Reconciler
    source: demand.Source | None
    metrics: metrics.Metrics
    evaluation_period: float
    workers: int
    monotonic: Callable[[], float] = time.monotonic
    queue: queue.WorkQueue[Key] = field(default_factory=queue.WorkQueue)
    _seen: dict[Key, tuple[str, int, bool, float | None]] = field(default_factory=dict)
    _nodes: frozenset[observations.Node] | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    # ------------------------------------------------------------------ events

    def projectversion_event(
        self,
        *,
        key: Key,
        uid: str,
        generation: int,
        deleting: bool,
        activation: float | None = None,
    ) -> None:
        """Queue a reconcile when the spec, the object, its deletion or an activation is new.

        Status-only changes (most of them the operator's own writes) queue nothing,
        which also keeps time-dependent messages from feeding back into writes.
        ``activation`` is the time a gateway asked for a unit of the model (an
        annotation the operator never writes, so reacting to it cannot loop).
        """
        marker = (uid, generation, deleting, activation)
        before = self._seen.get(key)
        if before == marker:
            return
        if before is not None and before[0] != uid:
            self.reconciler.forget(key)  # deleted and created again under the same name
        self._seen[key] = marker
        self.queue.add(key)

    def projectversion_deleted(self, key: Key) -> None:
        self._seen.pop(key, None)
        self.queue.forget(key)
        self.reconciler.forget(key)
        self.metrics.forget(key)

    def owned_event(self, key: Key) -> None:
        """A unit pod or an owned object changed: its ProjectVersion's status may change."""
        if key in self._seen:
            self.queue.add(key)

    def nodes_event(self, nodes: frozenset[observations.Node]) -> None:
        """A node's health, labels, taints or extended resources changed (heartbeats change
        none of them): every ProjectVersion may need its units placed anew."""
        if nodes == self._nodes:
            return
        zones = sorted({node.zone for node in nodes if node.zone})
        healthy = sorted({node.zone for node in nodes if node.zone and node.available})
        logger.info("zones: %s; healthy: %s", zones, healthy or "none")
        self._nodes = nodes
        for key in self._seen:
            self.queue.add(key)

    # ------------------------------------------------------------------ loops

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"reconcile worker {n}")
            for n in range(self.workers)
        ]
        self._tasks.append(asyncio.create_task(self._evaluate(), name="evaluation"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def healthy(self) -> bool:
        """Every loop still runs (none died of an unexpected error)."""
        return all(not task.done() for task in self._tasks)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            started = self.monotonic()
            try:
                due = await self.reconciler.reconcile(key)
            except errors.KubernetesError as exc:
                delay = self.queue.retry(key)
                self.metrics.failed(key)
                logger.warning("%s/%s: %s; retrying in %.0f s", *key, exc, delay)
            except Exception:
                delay = self.queue.retry(key)
                self.metrics.failed(key)
                logger.exception("%s/%s: reconcile failed; retrying in %.0f s", *key, delay)
            else:
                self.queue.succeeded(key)
                if due is not None:
                    self.queue.add_after(key, due)
            finally:
                self.queue.done(key)
                self.metrics.reconciled(key, self.monotonic() - started)

    async def _evaluate(self) -> None:
        while True:
            started = self.monotonic()
            try:
                await self._evaluate_once()
            except Exception:
                logger.exception("evaluation failed")
            await asyncio.sleep(max(self.evaluation_period - (self.monotonic() - started), 0.0))

    async def _evaluate_once(self) -> None:
        clock = self.reconciler.clock
        sample = None if self.source is None else await self.source.sample(now=clock())
        self.metrics.sampled(known=sample is not None)
        self.reconciler.demand = sample
        if self.source is not None and self.source.window is not None:
            self.reconciler.demand_seconds = self.source.window
        now = clock()
        for key in list(self._seen):
            if await self.reconciler.evaluate(key, now=now):
                self.queue.add(key)
