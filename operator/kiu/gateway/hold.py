"""The hold queue: calls to a model scaled to zero wait here for its first unit.

A RUNNING model with no ready unit is idle at zero (or its units are all
restarting). The first call to it does two things at once:

* it *activates* the model: the source writes a small signal the operator
  watches (the ``kiu.dev/activation-requested-at`` annotation on the
  ProjectVersion), so a unit is started now rather than at the next demand
  scrape. Writes are idempotent and rate-limited per model and replica (one per
  ``activation_interval`` while calls are held), so a burst makes one write,
  and a held call keeps the model awake while its unit starts;
* it waits, with at most ``size`` others of the same model, for at most
  ``timeout`` seconds. Beyond the size, past the wait, or when the gateway
  shuts down, the call is answered with ResourceNotReadyException carrying a
  retry hint (message and ``Retry-After``) instead of being dropped.

When the first unit enters the routing table every held call wakes and goes on
exactly once, through the TPS budget: a held call waits for a token (the
bucket refills at the model's rate) rather than being throttled at once, so a
burst held during the cold start reaches the new unit at the model's TPS and
is answered within the same wait; a call still without a token when its wait
ends gets ProvisionedThroughputExceededException, as any call beyond the limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from kiu.gateway import catalog, errors, metrics

log = logging.getLogger(__name__)

DEFAULT_SIZE = 64
#: Below botocore's 60 s read timeout, so a held call is answered before the client gives up.
DEFAULT_TIMEOUT = 45.0
DEFAULT_ACTIVATION_INTERVAL = 5.0

#: Writes the activation signal of a model (namespace, name); raises on failure.
Activate = Callable[[str, str], Awaitable[None]]


def require_running(spec: catalog.ModelSpec) -> None:
    """Refuse a model that is not RUNNING: nothing is held for a starting or stopped one."""
    if spec.status != "RUNNING":
        raise errors.ResourceNotReady(f"ProjectVersion {spec.name} is {spec.status}, not RUNNING.")


class Hold:
    """Per-model bounded waiting for the first unit, and the activation signal."""

    def __init__(
        self,
        *,
        meters: metrics.Metrics,
        activate: Activate | None = None,
        size: int = DEFAULT_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        activation_interval: float = DEFAULT_ACTIVATION_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 0 or timeout < 0 or activation_interval <= 0:
            raise ValueError("hold size and timeout must be >= 0, the interval > 0")
        self._metrics = meters
        self._activate = activate
        self._size = size
        self._timeout = timeout
        self._interval = activation_interval
        self._clock = clock
        self._retry_after = max(1, math.ceil(activation_interval))
        self._waiting: set[catalog.Entry] = set()
        self._writes: set[asyncio.Task[None]] = set()
        self._closed = False

    async def wait(self, entry: catalog.Entry) -> None:
        """Wait until ``entry`` has a ready unit and a token of its budget is taken.

        Raises ScalingFromZero (queue full, wait over, shutting down),
        ResourceNotReady (the model stopped meanwhile, or no source can start a
        unit: a directory file) or ProvisionedThroughputExceeded (a unit came, but
        no token in time).
        """
        name = entry.spec.name
        if self._activate is None:  # nothing would start a unit: holding cannot help
            raise errors.ResourceNotReady(f"ProjectVersion {name} has no ready inference unit.")
        self.activate(entry)
        if entry.held >= self._size:
            raise self._refuse(
                "full",
                f"ProjectVersion {name} is scaling from zero and {entry.held} calls already "
                "wait for its first unit",
            )
        entry.held += 1
        self._waiting.add(entry)
        until = self._clock() + self._timeout
        try:
            while True:
                if self._closed:
                    raise self._refuse(
                        "shutdown", f"This gateway is shutting down; retry ProjectVersion {name}"
                    )
                require_running(entry.spec)
                now = self._clock()
                if len(entry.pool):
                    if entry.bucket.try_acquire(now=now):
                        return
                    pause = 1.0 / entry.bucket.rate if entry.bucket.rate > 0 else self._interval
                else:
                    self.activate(entry)
                    pause = self._interval
                left = until - now
                if left <= 0:
                    if len(entry.pool):
                        self._metrics.hold_rejections.labels("throttled").inc()
                        raise errors.ProvisionedThroughputExceeded()
                    raise self._refuse(
                        "timeout",
                        f"ProjectVersion {name} has had no ready inference unit for the "
                        f"{self._timeout:g} s this call waited; its first unit is starting",
                    )
                await entry.changed(within=min(pause, left))
        finally:
            entry.held -= 1
            if not entry.held:
                self._waiting.discard(entry)

    def activate(self, entry: catalog.Entry) -> None:
        """Signal demand for a model at zero now, at most once per interval per model."""
        write = self._activate
        if write is None:
            return
        now = self._clock()
        if entry.activated_at is not None and now - entry.activated_at < self._interval:
            return
        entry.activated_at = now
        entry.meters.activations.inc()
        spec = entry.spec
        task = asyncio.create_task(
            self._write(write, spec.namespace, spec.name), name=f"kiu-activate-{spec.name}"
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, write: Activate, namespace: str, name: str) -> None:
        try:
            await write(namespace, name)
        except Exception as exc:  # the next held call (or the demand scrape) tries again
            log.warning("cannot signal demand for %s/%s: %s", namespace, name, exc)
        else:
            log.info("%s/%s: no ready unit; asked the operator for one", namespace, name)

    def close(self) -> None:
        """Shutting down: answer every held call now (each gets a retry hint)."""
        self._closed = True
        for entry in list(self._waiting):
            entry.notify()

    def _refuse(self, reason: str, message: str) -> errors.ScalingFromZero:
        self._metrics.hold_rejections.labels(reason).inc()
        return errors.ScalingFromZero(
            f"{message}; retry in {self._retry_after} s.", retry_after=self._retry_after
        )
