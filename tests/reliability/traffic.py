"""Load for the fault scenarios, and the figures each scenario reports.

:class:`Balancer` plays the gateway Service: the local cluster has no kube-proxy,
so a small userspace TCP balancer follows the Service's EndpointSlices (ready
endpoints only, the last known set kept while the API server is away, as
kube-proxy does) and spreads new connections over them round robin.

:class:`Traffic` is an open-loop load of ``DetectCustomLabels`` calls made with
boto3 exactly as a user's code makes them (SigV4, botocore's standard retry mode
when ``attempts`` > 1), from a thread pool so that a slow answer delays no other
call. Every call sent is recorded with exactly one outcome: ``ok``, the error
code of the answer, or the exception that left it without one (then it is
*lost*). Calls are tagged with the phase of the scenario they were sent in.

:class:`Figures` is what a scenario writes to ``.kiu/reliability/<name>.json``
(an ignored folder: each run regenerates them, ``make reliability`` turns the
last ones into docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tests.chart.chart import RELEASE, Release
from tests.cluster.fixtures import REPO

RESULTS = REPO / ".kiu" / "reliability"
THROTTLED = "ProvisionedThroughputExceededException"
#: Figures files written by the running test (conftest.py adds its outcome to them).
WRITTEN: list[Path] = []


class Balancer:
    """A TCP balancer on 127.0.0.1 over the ready endpoints of the gateway Service."""

    def __init__(self, release: Release, *, poll: float = 0.5) -> None:
        self._release = release
        self._poll = poll
        self._backends: list[str] = []
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._threads = [
            threading.Thread(target=self._follow, daemon=True),
            threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True),
        ]
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backends(self) -> list[str]:
        return list(self._backends)

    def __enter__(self) -> Balancer:
        self._backends = self._release.gateway_addresses()
        for thread in self._threads:
            thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the balancer did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._loop is not None and self._closing is not None:
            self._loop.call_soon_threadsafe(self._closing.set)
        for thread in self._threads:
            thread.join(timeout=10)

    def _follow(self) -> None:
        from kubernetes import client

        api = self._release.cluster.new_api_client()
        try:
            discovery = client.DiscoveryV1Api(api)
            while not self._stop.wait(self._poll):
                with contextlib.suppress(Exception):  # API server away: keep the last set
                    slices = discovery.list_namespaced_endpoint_slice(
                        self._release.namespace,
                        label_selector=f"kubernetes.io/service-name={RELEASE}-gateway",
                        _request_timeout=2,
                    )
                    self._backends = sorted(
                        f"{ep.addresses[0]}:8080"
                        for piece in slices.items
                        for ep in piece.endpoints or []
                        if ep.conditions and ep.conditions.ready
                    )
        finally:
            api.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        relays: set[asyncio.Task[None]] = set()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            relays.add(task)
            try:
                await self._relay(reader, writer)
            finally:
                relays.discard(task)

        server = await asyncio.start_server(accepted, "127.0.0.1", 0, family=socket.AF_INET)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._closing.wait()
        server.close()
        for task in list(relays):
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            backends = self._backends
            if not backends:
                return  # the client sees the connection closed and retries
            host, port = backends[next(self._turn) % len(backends)].rsplit(":", 1)
            try:
                up_reader, upstream = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port)), 3
                )
            except (OSError, TimeoutError):
                return
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        finally:
            for end in (writer, upstream):
                if end is not None:
                    end.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await end.wait_closed()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side; a reset is passed on as a reset
    (as NAT passes it), so a client waiting for an answer learns of it at once."""
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except OSError:
        dst.transport.abort()
        return
    with contextlib.suppress(OSError):
        if dst.can_write_eof():
            dst.write_eof()


@dataclass(frozen=True, slots=True)
class Call:
    phase: str
    sent: float  # seconds since the load started
    latency: float
    outcome: str  # "ok", an error code, or the exception that left no answer
    status: int  # HTTP status of the answer, 0 without one
    attempts: int


class Traffic:
    """Open-loop DetectCustomLabels calls at ``rate`` per second until stopped, spread
    evenly over ``clients`` boto3 clients (each its own connections), as from many
    users: a per-connection balancer then splits them evenly over the gateway replicas,
    each of which admits its share of the limit (docs/gateway.md)."""

    def __init__(
        self,
        release: Release,
        *,
        endpoint_url: str,
        arn: str,
        image: bytes,
        rate: float,
        attempts: int = 1,
        clients: int = 8,
        workers: int = 64,
    ) -> None:
        self.rate = rate
        self.phase = "before"
        self.calls: list[Call] = []
        self._clients = [
            release.rekognition(endpoint_url, attempts=attempts, connections=workers // clients)
            for _ in range(clients)
        ]
        self._arn = arn
        self._image = image
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0
        self._thread = threading.Thread(target=self._schedule, daemon=True)
        self._start = 0.0

    def __enter__(self) -> Traffic:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sending and wait for every call in flight to be answered or lost."""
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)
        for client in self._clients:
            client.close()

    @property
    def sent(self) -> int:
        return self._sent

    def now(self) -> float:
        return time.monotonic() - self._start

    def _schedule(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            phase = self.phase
            client = self._clients[self._sent % len(self._clients)]
            self._sent += 1
            self._pool.submit(self._one, client, phase, time.monotonic())
            due += 1.0 / self.rate
            self._stop.wait(max(due - time.monotonic(), 0.0))

    def _one(self, client: Any, phase: str, sent: float) -> None:
        outcome, status, attempts = "ok", 200, 1
        try:
            answer = client.detect_custom_labels(
                ProjectVersionArn=self._arn, Image={"Bytes": self._image}
            )
            attempts += answer["ResponseMetadata"].get("RetryAttempts", 0)
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
            status = exc.response["ResponseMetadata"].get("HTTPStatusCode", 0)
            attempts += exc.response["ResponseMetadata"].get("RetryAttempts", 0)
        except (BotoCoreError, OSError) as exc:
            outcome, status = type(exc).__name__, 0
        done = time.monotonic()
        call = Call(phase, sent - self._start, done - sent, outcome, status, attempts)
        with self._lock:
            self.calls.append(call)


@dataclass
class Figures:
    """What one scenario measured; written as JSON for the reliability report."""

    scenario: str
    title: str
    asserts: str
    rate: dict[str, float] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    sent: int = 0
    recovery: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def take(self, traffic: Traffic) -> None:
        self.sent += traffic.sent
        self.calls += traffic.calls

    def tally(self, phase: str | None = None) -> dict[str, Any]:
        calls = [c for c in self.calls if phase is None or c.phase == phase]
        outcomes = Counter(c.outcome for c in calls)
        failed = {k: v for k, v in outcomes.items() if k not in ("ok", THROTTLED)}
        return {
            "sent": len(calls) if phase is not None else self.sent,
            "answered": sum(1 for c in calls if c.status),
            "succeeded": outcomes["ok"],
            "throttled": outcomes[THROTTLED],
            "failed": sum(failed.values()),
            "failed_by_error": failed,
            "server_errors": sum(1 for c in calls if c.status >= 500),
            "lost": sum(1 for c in calls if not c.status),
            "retried": sum(1 for c in calls if c.attempts > 1),
            "p99_latency_s": _percentile([c.latency for c in calls if c.outcome == "ok"], 99),
        }

    def phases(self) -> list[str]:
        return list(dict.fromkeys(c.phase for c in sorted(self.calls, key=lambda c: c.sent)))

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.scenario}.json"
        body = {
            "scenario": self.scenario,
            "title": self.title,
            "asserts": self.asserts,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rate_per_s": self.rate,
            "total": self.tally(),
            "phases": {phase: self.tally(phase) for phase in self.phases()},
            "recovery_s": {k: round(v, 1) for k, v in self.recovery.items()},
            "notes": self.notes,
        }
        path.write_text(json.dumps(body, indent=2) + "\n")
        WRITTEN.append(path)
        print(f"\n{self.scenario}: {json.dumps(body['total'])} recovery {body['recovery_s']}")
        return path


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))], 3)
