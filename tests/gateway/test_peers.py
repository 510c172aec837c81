"""The replica exchange between gateway processes: a replica killed, a replica frozen;
and a replica that finds its own address among its peers.

Two `kiu gateway` processes name each other with ``--peer``; every call goes to
the first (a 100/0 split, as one keep-alive client gets). The state each test
waits for is read from the survivor's own gauges, and then the calls it admits
are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kiu.imaging import scenes

from . import load, processes
from .conftest import NAMESPACE, arn, directory, version, write

LIMIT = 10.0
SECONDS = 6.0
THROTTLED = "ProvisionedThroughputExceededException"
MODEL = (("namespace", NAMESPACE), ("projectversion", "metered"))


@contextlib.contextmanager
def pair(
    real_units: dict[str, list[processes.Unit]], tmp_path: Path
) -> Iterator[tuple[processes.Gateway, processes.Gateway]]:
    path = tmp_path / "directory.yaml"
    content = directory([version("metered", units=[], tps=LIMIT)], replicas=2)
    content["projectVersions"][0]["units"] = [real_units["classifier"][0].entry()]
    write(path, content)
    ports = [processes.free_port(), processes.free_port()]
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                processes.gateway(
                    path,
                    tmp_path,
                    *("--peer", f"{processes.HOST}:{ports[1 - i]}"),
                    internal_port=ports[i],
                )
            )
            for i in range(2)
        ]
        processes.wait_until(
            lambda: all(
                gauge(gw, "kiu_gateway_peers", (("state", "heard"),)) == 1 for gw in started
            ),
            timeout=30,
            what="the replicas to hear each other",
        )
        yield started[0], started[1]


def gauge(gw: processes.Gateway, name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
    return processes.metrics(gw).get((name, labels), -1.0)


def admitted(results: list[load.Result]) -> int:
    assert {r.error for r in results} <= {"", THROTTLED}, load.tally(results)
    return sum(r.error == "" for r in results)


@pytest.fixture
def image() -> bytes:
    return next(scenes.scenes("classification", seed=8, count=1)).image


async def test_a_killed_replica_leaves_the_whole_limit_to_the_survivor(
    real_units: dict[str, list[processes.Unit]], tmp_path: Path, image: bytes
) -> None:
    with pair(real_units, tmp_path) as (a, b):
        b.process.signal(signal.SIGKILL)
        processes.wait_until(
            lambda: gauge(a, "kiu_gateway_peers", (("state", "gone"),)) == 1,
            timeout=30,
            what="the survivor to find the killed replica gone",
        )
        assert gauge(a, "kiu_gateway_tps_share", MODEL) == pytest.approx(LIMIT)
        assert gauge(a, "kiu_gateway_share_fallback") == 0
        results = await load.offer(
            [(a.url, 2 * LIMIT)], arn=arn("metered"), image=image, seconds=SECONDS
        )
    window = results[-1].sent - results[0].sent
    # The whole limit over the run, plus what the bucket held: the half it had before
    # the takeover (a share that grows mints no tokens), up to a full second of it.
    low, high = LIMIT * window + LIMIT / 2, LIMIT * window + LIMIT
    assert 0.95 * low <= admitted(results) <= 1.05 * high


async def test_a_frozen_replica_keeps_its_share_so_the_limit_is_never_exceeded(
    real_units: dict[str, list[processes.Unit]], tmp_path: Path, image: bytes
) -> None:
    with pair(real_units, tmp_path) as (a, b):
        b.process.signal(signal.SIGSTOP)  # alive for the kernel, silent to its peers
        try:
            processes.wait_until(
                lambda: gauge(a, "kiu_gateway_share_fallback") == 1,
                timeout=30,
                what="the survivor to fall back",
            )
            assert gauge(a, "kiu_gateway_peers", (("state", "silent"),)) == 1
            assert gauge(a, "kiu_gateway_tps_share", MODEL) == pytest.approx(LIMIT / 2)
            results = await load.offer(
                [(a.url, 2 * LIMIT)], arn=arn("metered"), image=image, seconds=SECONDS
            )
        finally:
            b.process.signal(signal.SIGCONT)
        window = results[-1].sent - results[0].sent
        # Half the limit (the frozen replica may admit the other half when it wakes),
        # plus what the bucket held: at most one second of that half.
        assert admitted(results) <= LIMIT / 2 * window + LIMIT / 2 + 1
        processes.wait_until(
            lambda: gauge(a, "kiu_gateway_share_fallback") == 0,
            timeout=30,
            what="the survivor to hear its peer again",
        )


async def page(gw: Any) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gw.internal_url}/metrics?name[]=kiu_gateway_peers") as response,
    ):
        return await response.text()


async def test_a_replica_that_finds_itself_among_its_peers_does_not_count_itself(
    local: Any,
) -> None:
    """Discovery lists every replica, this one too: it knows itself by its answer."""
    port = processes.free_port()
    gw = await local(
        directory([version("metered", tps=LIMIT)]),
        *("--internal-port", str(port), "--peer", f"127.0.0.1:{port}"),
    )
    entry = gw.gateway.catalog.get(NAMESPACE, "metered")
    assert entry is not None
    alone = 'kiu_gateway_peers{state="silent"} 0.0'
    for _ in range(200):  # until it has answered itself once (the first tick)
        if alone in await page(gw):
            break
        await asyncio.sleep(0.05)
    text = await page(gw)
    assert alone in text
    assert 'kiu_gateway_peers{state="heard"} 0.0' in text
    assert entry.bucket.rate == pytest.approx(LIMIT)  # the whole limit: it is alone
