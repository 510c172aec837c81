"""Routing: least outstanding of two choices, zone preference, slots, retry, draining."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from kiu.gateway import errors, routing, upstream

from .fakes import FakeTransport, unavailable

A1 = upstream.Endpoint("10.0.0.1", 8001, "a")
A2 = upstream.Endpoint("10.0.0.2", 8001, "a")
B1 = upstream.Endpoint("10.0.1.1", 8001, "b")
C1 = upstream.Endpoint("10.0.2.1", 8001, "c")


def pool(transport: FakeTransport, *units: upstream.Endpoint, **options: object) -> routing.Pool:
    p = routing.Pool(transport=transport, zone="a", rng=random.Random(7), **options)  # type: ignore[arg-type]
    p.update(units)
    return p


def deadline(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_idle_traffic_stays_in_the_own_zone() -> None:
    transport = FakeTransport()
    p = pool(transport, A1, A2, B1, C1)
    for _ in range(50):
        await p.infer(model="m", image=b"x", deadline=deadline())
    assert {e.zone for e in transport.calls} == {"a"}
    assert Counter(transport.calls)[A1] > 10
    assert Counter(transport.calls)[A2] > 10


async def test_spills_to_other_zones_when_the_own_zone_is_busier() -> None:
    transport = FakeTransport()
    transport.gate = asyncio.Event()
    p = pool(transport, A1, B1, C1, zone_slack=1)
    calls = [
        asyncio.create_task(p.infer(model="m", image=b"x", deadline=deadline())) for _ in range(9)
    ]
    await asyncio.sleep(0.01)
    in_flight = {u.endpoint: u.in_flight for u in p.units}
    assert sum(in_flight.values()) == 9
    # the local unit carries at most zone_slack more than the least-loaded other unit
    assert in_flight[A1] <= min(in_flight[B1], in_flight[C1]) + 1 + 1
    assert in_flight[B1] > 0
    assert in_flight[C1] > 0
    transport.gate.set()
    await asyncio.gather(*calls)
    assert p.in_flight == 0


async def test_least_outstanding_balances_a_zone() -> None:
    transport = FakeTransport()
    transport.gate = asyncio.Event()
    p = routing.Pool(transport=transport, zone="", rng=random.Random(1))
    p.update([upstream.Endpoint(f"10.0.0.{i}", 8001, "") for i in range(4)])
    calls = [
        asyncio.create_task(p.infer(model="m", image=b"x", deadline=deadline())) for _ in range(16)
    ]
    await asyncio.sleep(0.01)
    loads = sorted(u.in_flight for u in p.units)
    assert loads[-1] - loads[0] <= 2
    transport.gate.set()
    await asyncio.gather(*calls)


async def test_concurrency_per_unit_is_bounded_and_waiters_get_freed_slots() -> None:
    transport = FakeTransport()
    transport.gate = asyncio.Event()
    p = pool(transport, A1, B1, unit_concurrency=2)
    calls = [
        asyncio.create_task(p.infer(model="m", image=b"x", deadline=deadline())) for _ in range(6)
    ]
    await asyncio.sleep(0.01)
    assert [u.in_flight for u in p.units] == [2, 2]
    transport.gate.set()
    await asyncio.gather(*calls)
    assert len(transport.calls) == 6


async def test_waiting_past_the_deadline_is_throttling() -> None:
    transport = FakeTransport()
    transport.gate = asyncio.Event()
    p = pool(transport, A1, unit_concurrency=1)
    first = asyncio.create_task(p.infer(model="m", image=b"x", deadline=deadline()))
    await asyncio.sleep(0)
    with pytest.raises(errors.Throttling):
        await p.infer(model="m", image=b"x", deadline=deadline(0.05))
    transport.gate.set()
    await first


async def test_unavailable_unit_is_retried_once_elsewhere_and_then_avoided() -> None:
    transport = FakeTransport()
    transport.behaviour[A1] = unavailable()
    p = pool(transport, A1, A2, eject_seconds=60)
    results = [await p.infer(model="m", image=b"x", deadline=deadline()) for _ in range(20)]
    assert all(retries in (0, 1) for _, retries in results)
    assert sum(retries for _, retries in results) == 1
    assert Counter(transport.calls)[A1] == 1


async def test_only_unit_failing_is_an_internal_error() -> None:
    transport = FakeTransport()
    transport.behaviour[A1] = unavailable()
    p = pool(transport, A1)
    with pytest.raises(errors.InternalServerError):
        await p.infer(model="m", image=b"x", deadline=deadline())


async def test_every_unit_ejected_still_tries_one() -> None:
    transport = FakeTransport()
    p = pool(transport, A1, B1, eject_seconds=60)
    for unit in p.units:
        p.eject(unit)
    prediction, _ = await p.infer(model="m", image=b"x", deadline=deadline())
    assert prediction.labels


async def test_removed_unit_finishes_in_flight_then_closes() -> None:
    transport = FakeTransport()
    transport.gate = asyncio.Event()
    p = pool(transport, A1)
    running = asyncio.create_task(p.infer(model="m", image=b"x", deadline=deadline()))
    await asyncio.sleep(0.01)
    p.update([B1])
    channel = transport.channels[A1][0]
    assert not channel.closed
    assert [u.endpoint for u in p.units] == [B1]
    second = asyncio.create_task(p.infer(model="m", image=b"x", deadline=deadline()))
    await asyncio.sleep(0.01)
    assert transport.calls == [A1, B1]  # the new request went to B1 at once
    transport.gate.set()
    await asyncio.gather(running, second)
    await asyncio.sleep(0)
    assert channel.closed


async def test_no_unit_is_not_ready() -> None:
    p = pool(FakeTransport())
    with pytest.raises(errors.ResourceNotReady):
        await p.infer(model="m", image=b"x", deadline=deadline())


async def test_waiters_are_released_when_units_go_away() -> None:
    transport = FakeTransport()
    transport.gate = asyncio.Event()
    p = pool(transport, A1, unit_concurrency=1)
    first = asyncio.create_task(p.infer(model="m", image=b"x", deadline=deadline()))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(p.infer(model="m", image=b"x", deadline=deadline()))
    await asyncio.sleep(0.01)
    p.update([])
    with pytest.raises(errors.ResourceNotReady):
        await waiting
    transport.gate.set()
    await first


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (upstream.DeadlineExceeded("x"), errors.Throttling),
        (upstream.Rejected("bad image"), errors.InvalidImageFormat),
        (upstream.Failed("boom"), errors.InternalServerError),
    ],
)
async def test_other_unit_failures_map_to_reference_errors(
    failure: upstream.UpstreamError, error: type[errors.GatewayError]
) -> None:
    transport = FakeTransport()

    async def fail() -> upstream.Prediction:
        raise failure

    transport.behaviour[A1] = fail  # type: ignore[assignment]
    p = pool(transport, A1, A2)
    transport.behaviour[A2] = fail  # type: ignore[assignment]
    with pytest.raises(error):
        await p.infer(model="m", image=b"x", deadline=deadline())
    assert p.in_flight == 0
