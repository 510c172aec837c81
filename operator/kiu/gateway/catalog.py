"""The catalog: what the data plane knows of models, units and access keys.

A *source* fills the catalog (:mod:`kiu.gateway.directory` from a file,
:mod:`kiu.gateway.kube` from the Kubernetes API) and carries Start/Stop back to
where models are declared; the data plane only reads the catalog, so it cannot
tell which source is in use. Both implement :class:`Source`.

Each model has an :class:`Entry` holding its declared :class:`ModelSpec` and
the live pieces derived from it, kept in step on every change: the routing
pool of its ready units, the TPS token bucket (``tps x ready units`` times this
replica's fraction of it: an even split over the gateway replicas until
:mod:`kiu.gateway.peers` sets one from where the calls arrive) and its labelled metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from kiu import sigv4
from kiu.gateway import metrics, routing, upstream
from kiu.policy import budget

State = Literal["Running", "Stopped"]
Task = Literal["Classification", "ObjectDetection"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One ProjectVersion as the gateway needs it; ``units`` are the ready ones only."""

    namespace: str
    name: str
    project: str
    created_ms: int
    arn: str
    state: State = "Running"
    status: str = "RUNNING"
    status_message: str = ""
    min_units: int = 1
    max_units: int | None = None
    tps: float = 5.0
    task: Task = "Classification"
    model: str = ""
    units: tuple[upstream.Endpoint, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An access key and the namespaces it may act on (``*`` for all)."""

    credentials: sigv4.Credentials
    namespaces: frozenset[str] = field(default_factory=frozenset)

    def allows(self, namespace: str) -> bool:
        return namespace in self.namespaces or "*" in self.namespaces


class Source(Protocol):
    """Where models are declared: fills a catalog and applies Start/Stop."""

    async def run(self, catalog: Catalog) -> None:
        """Fill ``catalog`` and keep it current until cancelled; mark it synced once."""

    async def set_state(
        self,
        *,
        namespace: str,
        name: str,
        state: State,
        min_units: int | None = None,
        max_units: int | None = None,
    ) -> None:
        """Declare a model Running (with its unit range) or Stopped.

        Raises ResourceNotFound if the model is gone, InternalServerError if the
        declaration could not be written.
        """


class Entry:
    """A model in the catalog: its spec and the live routing, budget and metrics.

    ``held`` counts the calls waiting for its first unit (:mod:`kiu.gateway.hold`),
    which sleep in :meth:`changed` until the catalog changes the entry.
    """

    __slots__ = (
        "_change",
        "activated_at",
        "bucket",
        "fraction",
        "held",
        "meters",
        "offered_rate",
        "pool",
        "spec",
    )

    def __init__(
        self,
        spec: ModelSpec,
        *,
        pool: routing.Pool,
        bucket: budget.TokenBucket,
        meters: metrics.ModelMeters,
    ) -> None:
        self.spec = spec
        self.pool = pool
        self.bucket = bucket
        self.meters = meters
        self.held = 0
        self.activated_at: float | None = None
        #: This replica's part of the limit (None: an even split over the replicas).
        self.fraction: float | None = None
        #: Calls/s this replica receives for the model, as last measured (kiu.gateway.peers).
        self.offered_rate = 0.0
        self._change: asyncio.Event | None = None

    @property
    def tps_limit(self) -> float:
        """The model's limit: TPS per unit x units in the routing table."""
        return budget.tps_limit(tps_per_unit=self.spec.tps, ready_units=len(self.pool))

    async def changed(self, *, within: float) -> None:
        """Return at the next change of the entry (or removal), or after ``within`` seconds."""
        if self._change is None:
            self._change = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(within, 0.0)):
                await self._change.wait()

    def notify(self) -> None:
        """Wake every call sleeping in :meth:`changed`."""
        if self._change is not None:
            self._change.set()
            self._change = None


class Catalog:
    """Models by namespace and name, access keys by id, and the gateway replicas.

    ``replica_hosts`` are the addresses of the replicas the source discovered (None
    when it cannot know them, as with a directory file).
    """

    def __init__(
        self,
        *,
        pools: Callable[[], routing.Pool],
        meters: metrics.Metrics,
        clock: Callable[[], float] = time.monotonic,
        burst_seconds: float = 1.0,
    ) -> None:
        self._pools = pools
        self._metrics = meters
        self._clock = clock
        self._burst = burst_seconds
        self._entries: dict[tuple[str, str], Entry] = {}
        self._keys: dict[str, AccessKey] = {}
        self.replicas = 1
        self.replica_hosts: frozenset[str] | None = None
        #: The gateway-wide object-storage credentials (an opt-in default), and each
        #: namespace's own, which win for its models.
        self.s3_credentials: sigv4.Credentials | None = None
        self.s3_namespace_credentials: dict[str, sigv4.Credentials] = {}
        self.synced = False
        meters.watch(models=self._gauges, replicas=lambda: self.replicas)

    # --- reads (the data plane) ------------------------------------------------------

    def s3_credentials_for(self, namespace: str) -> sigv4.Credentials | None:
        """What reads objects for the models of ``namespace``: its own credentials, else
        the gateway-wide ones if any were configured."""
        return self.s3_namespace_credentials.get(namespace, self.s3_credentials)

    def get(self, namespace: str, name: str) -> Entry | None:
        return self._entries.get((namespace, name))

    def entries(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def project(self, namespace: str, project: str) -> list[Entry]:
        """The versions of a project, newest first."""
        found = [
            e
            for (ns, _), e in self._entries.items()
            if ns == namespace and e.spec.project == project
        ]
        found.sort(key=lambda e: (-e.spec.created_ms, e.spec.name))
        return found

    def access_key(self, access_key_id: str) -> AccessKey | None:
        return self._keys.get(access_key_id)

    def credentials(self, access_key_id: str) -> sigv4.Credentials | None:
        key = self._keys.get(access_key_id)
        return key.credentials if key is not None else None

    # --- writes (the sources) --------------------------------------------------------

    def put(self, spec: ModelSpec) -> None:
        """Add or change a model; its pool, budget and metrics follow.

        A new model's bucket starts full, and so does one whose first unit becomes
        ready; other changes of rate mint no tokens (`budget.TokenBucket.set_rate`).
        """
        key = (spec.namespace, spec.name)
        entry = self._entries.get(key)
        if entry is None:
            pool = self._pools()
            pool.update(spec.units)
            limit = budget.tps_limit(tps_per_unit=spec.tps, ready_units=len(pool))
            rate = budget.replica_share(limit=limit, replicas=self.replicas)
            bucket = budget.TokenBucket(rate=rate, now=self._clock(), burst_seconds=self._burst)
            meters = self._metrics.model(spec.namespace, spec.name)
            self._entries[key] = Entry(spec, pool=pool, bucket=bucket, meters=meters)
            return
        old = entry.spec
        entry.spec = spec
        if old.units != spec.units:
            entry.pool.update(spec.units)
        self._rebudget(entry)
        entry.notify()

    def remove(self, namespace: str, name: str) -> None:
        entry = self._entries.pop((namespace, name), None)
        if entry is not None:
            entry.pool.update(())
            entry.meters.forget()
            entry.notify()

    def replace(self, specs: Iterable[ModelSpec]) -> None:
        """Make the catalog hold exactly ``specs`` (a full listing)."""
        wanted = {(s.namespace, s.name): s for s in specs}
        for key in [k for k in self._entries if k not in wanted]:
            self.remove(*key)
        for spec in wanted.values():
            self.put(spec)

    def set_access_keys(self, keys: Iterable[AccessKey]) -> None:
        self._keys = {k.credentials.access_key_id: k for k in keys}

    def set_replicas(self, replicas: int, *, hosts: Iterable[str] | None = None) -> None:
        """The number of gateway replicas (and their addresses, when the source knows them)."""
        self.replica_hosts = frozenset(hosts) if hosts is not None else None
        replicas = max(1, replicas)
        if replicas != self.replicas:
            self.replicas = replicas
            for entry in self._entries.values():
                self._rebudget(entry)

    def set_fraction(self, entry: Entry, fraction: float | None) -> None:
        """Give this replica ``fraction`` of the entry's limit (None: an even split)."""
        entry.fraction = fraction
        self._rebudget(entry)

    def _rebudget(self, entry: Entry) -> None:
        limit = entry.tps_limit
        if entry.fraction is None:
            rate = budget.replica_share(limit=limit, replicas=self.replicas)
        else:
            rate = limit * entry.fraction
        if rate != entry.bucket.rate:
            entry.bucket.set_rate(rate=rate, now=self._clock())

    async def close(self) -> None:
        for entry in list(self._entries.values()):
            await entry.pool.close()

    def _gauges(self) -> Iterator[metrics.ModelGauges]:
        for entry in list(self._entries.values()):
            spec = entry.spec
            yield metrics.ModelGauges(
                namespace=spec.namespace,
                name=spec.name,
                in_flight=entry.pool.in_flight,
                tps_limit=entry.tps_limit,
                tps_share=entry.bucket.rate,
                offered_rate=entry.offered_rate,
                ready_units=len(entry.pool),
                held=entry.held,
            )
