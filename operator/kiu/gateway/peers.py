"""The replica exchange: each model's limit shared by where its calls arrive.

Every ``period`` (0.2 s, on multiples of it of the wall clock, so that all
replicas tick together) a replica

1. measures, per model, the calls its token bucket was asked for since the last
   tick (:class:`kiu.policy.shares.OfferedRate`) and publishes the rates;
2. a quarter of a period later asks every other replica, on the internal port,
   ``GET /peers/v1/offered``: the rates that replica published (models with none
   are left out), waiting at most half a period;
3. sets each model's bucket to :func:`kiu.policy.shares.share` of the limit,
   from its own rate and the rates of the peers heard from within ``ttl``
   (5 periods). Replicas that heard each other computed from the same rates, so
   their shares add up to the limit.

Admission stays a local token-bucket decision: nothing waits for a peer. The
peers are the endpoints of the gateway's Service (``catalog.replica_hosts``, from
the Kubernetes source; ready or not, since a replica frozen, or draining at
shutdown, may still admit calls on its open connections) on the internal port, or
the ``--peer`` addresses.
A peer is *heard* when it answered within ``ttl``; *gone* when its address refused
the connection since (nothing listens there: it admits nothing); *silent*
otherwise (frozen, partitioned, just discovered), and then it keeps an even share
of every limit reserved. Without discovery (a directory file), replicas counted by
the file's ``replicas`` beyond the ``--peer`` ones are silent. Hearing nobody is
thus the even split; a replica that died is gone at its first refused poll, or
when it leaves the Service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from kiu.gateway import catalog, metrics
from kiu.policy import shares

log = logging.getLogger(__name__)

PATH = "/peers/v1/offered"
DEFAULT_PERIOD = 0.2
#: Ticks a peer may miss before it counts as silent.
TTL_PERIODS = 5
#: The least fraction a bucket is given: a zero rate would close it, and a closed
#: bucket reopens full (`budget.TokenBucket.set_rate`), minting a burst each time
#: calls move back to this replica. Open, it holds at most one token meanwhile.
MIN_FRACTION = 1e-6

Key = tuple[str, str]


@dataclass(slots=True)
class _Peer:
    address: str
    heard_at: float | None = None
    refused_at: float | None = None
    offered: dict[Key, float] = field(default_factory=dict)
    polling: asyncio.Task[None] | None = None

    @property
    def gone(self) -> bool:
        """It refused a connection since it was last heard: nothing listens there."""
        return self.refused_at is not None and (
            self.heard_at is None or self.refused_at > self.heard_at
        )


@dataclass(slots=True)
class _Own:
    rate: shares.OfferedRate
    counted: int


class Peers:
    """This replica's side of the exchange: its measurements, its view of the peers."""

    def __init__(
        self,
        *,
        table: catalog.Catalog,
        meters: metrics.Metrics,
        port: int,
        static: Iterable[str] = (),
        own_host: str | None = None,
        period: float = DEFAULT_PERIOD,
        floor_fraction: float = shares.DEFAULT_FLOOR_FRACTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not period > 0:
            raise ValueError(f"the exchange period must be > 0, got {period}")
        self._catalog = table
        self._port = port
        self._static = frozenset(static)
        self._own_address = f"{own_host}:{port}" if own_host else None
        self._period = period
        self._ttl = TTL_PERIODS * period
        self._floor = floor_fraction
        self._clock = clock
        self.identity = uuid.uuid4().hex
        self._selves: set[str] = set()
        self._peers: dict[str, _Peer] = {}
        self._own: dict[Key, _Own] = {}
        self._offered: dict[Key, float] = {}
        self._last_tick: float | None = None
        self._session: aiohttp.ClientSession | None = None
        self._view: metrics.PeerGauges | None = None  # nothing known before the first tick
        meters.watch_peers(lambda: self._view)

    async def handle(self, request: web.Request) -> web.Response:
        """Answer a peer: who this replica is and the rates it measured."""
        body = {
            "replica": self.identity,
            "offered": [[ns, name, rate] for (ns, name), rate in self._offered.items()],
        }
        return web.json_response(body)

    async def run(self) -> None:
        """Tick until cancelled, on multiples of the period of the wall clock.

        All replicas tick together (their clocks agree to far better than the period):
        each publishes what it measured, then, a quarter of a period later, polls the
        others and sets its shares. So every replica computes from the same rates, and
        the shares add up to the limit, not just on average.
        """
        timeout = aiohttp.ClientTimeout(total=self._ttl / 2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            try:
                while True:
                    await asyncio.sleep(self._period - time.time() % self._period)
                    try:
                        await self._tick()
                    except Exception:  # the next tick starts afresh; admission goes on
                        log.exception("a tick of the replica exchange failed")
            finally:
                for peer in self._peers.values():
                    if peer.polling is not None:
                        peer.polling.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await peer.polling

    async def _tick(self) -> None:
        self._measure(self._clock())
        await asyncio.sleep(self._period / 4)
        polls = self._poll_all()
        if polls:
            await asyncio.wait(polls, timeout=self._period / 2)
        self.apply()

    def apply(self) -> None:
        """Set every model's share from the rates measured here and heard from peers."""
        heard, silent, gone = self._classify(self._clock())
        self._view = metrics.PeerGauges(heard=len(heard), silent=silent, gone=gone)
        for entry in self._catalog.entries():
            key = (entry.spec.namespace, entry.spec.name)
            limit = entry.tps_limit
            if limit <= 0.0:
                self._catalog.set_fraction(entry, None)
                continue
            part = shares.share(
                limit=limit,
                own=self._offered.get(key, 0.0),
                heard=[peer.offered.get(key, 0.0) for peer in heard],
                silent=silent,
                floor_fraction=self._floor,
            )
            self._catalog.set_fraction(entry, max(part / limit, MIN_FRACTION))

    def _poll_all(self) -> list[asyncio.Task[None]]:
        """Start a poll of every peer not still answering the previous one."""
        self._follow_addresses()
        started = []
        for peer in self._peers.values():
            if self._session is not None and (peer.polling is None or peer.polling.done()):
                peer.polling = asyncio.create_task(self._poll(peer), name="kiu-peer-poll")
                started.append(peer.polling)
        return started

    def _measure(self, now: float) -> None:
        seconds = now - self._last_tick if self._last_tick is not None else None
        self._last_tick = now
        seen: dict[Key, _Own] = {}
        offered: dict[Key, float] = {}
        for entry in self._catalog.entries():
            key = (entry.spec.namespace, entry.spec.name)
            count = entry.bucket.offered
            own = self._own.get(key) or _Own(rate=shares.OfferedRate(), counted=count)
            if seconds is not None and seconds > 0.0:
                own.rate.add(calls=max(count - own.counted, 0), seconds=seconds)
            own.counted = count
            seen[key] = own
            entry.offered_rate = own.rate.rate
            if own.rate.rate > 0.0:
                offered[key] = own.rate.rate
        self._own, self._offered = seen, offered

    def _follow_addresses(self) -> None:
        hosts = self._catalog.replica_hosts
        wanted = set(self._static)
        if hosts is not None:
            wanted |= {f"{host}:{self._port}" for host in hosts}
        wanted -= self._selves
        if self._own_address is not None:
            wanted.discard(self._own_address)
        for address in set(self._peers) - wanted:
            peer = self._peers.pop(address)
            if peer.polling is not None:
                peer.polling.cancel()
        for address in wanted - set(self._peers):
            self._peers[address] = _Peer(address)

    def _classify(self, now: float) -> tuple[list[_Peer], int, int]:
        heard: list[_Peer] = []
        gone = 0
        # Without discovery (a directory file), replicas beyond the --peer ones are
        # known by their number only: never heard, so each keeps an even share.
        silent = 0
        if self._catalog.replica_hosts is None:
            silent = max(0, self._catalog.replicas - 1 - len(self._peers))
        for peer in self._peers.values():
            if peer.heard_at is not None and now - peer.heard_at <= self._ttl:
                heard.append(peer)
            elif peer.gone:
                gone += 1
            else:
                silent += 1
        return heard, silent, gone

    async def _poll(self, peer: _Peer) -> None:
        assert self._session is not None
        try:
            async with self._session.get(f"http://{peer.address}{PATH}") as response:
                response.raise_for_status()
                body: Any = await response.json()
            replica = str(body["replica"])
            offered = {(str(ns), str(name)): float(rate) for ns, name, rate in body["offered"]}
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                if not peer.gone:
                    log.info("replica at %s refuses connections: gone, its share is taken over",
                             peer.address)  # fmt: skip
                peer.refused_at = self._clock()
            return
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            return
        if replica == self.identity:
            self._selves.add(peer.address)  # our own address, as discovery lists it
            return
        peer.offered = offered
        peer.heard_at = self._clock()
