"""The hold queue, in process over fake units: a model at zero units holds calls until its
first unit is ready, signals demand once per burst, and refuses what it cannot hold with a
retry hint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from kiu.gateway import command

from . import processes
from .conftest import Local, arn, directory, png, version, write
from .fakes import FakeTransport

MODEL = {"namespace": "retail", "projectversion": "cold"}


class Operator:
    """Plays the operator: records activations; `wake` gives the model its first unit."""

    def __init__(self) -> None:
        self.activations: list[tuple[str, str]] = []
        self.local: Local | None = None

    async def activate(self, namespace: str, name: str) -> None:
        self.activations.append((namespace, name))

    async def wake(self, tps: float) -> None:
        assert self.local is not None
        await self.local.reload(directory([cold(tps=tps, units=[("10.0.0.1", 8001, "a")])]))


def cold(*, tps: float = 50, units: list[tuple[str, int, str]] | None = None) -> dict[str, Any]:
    """A RUNNING model scaled to zero (no ready unit) unless `units` are given."""
    return version("cold", units=units or [], status="RUNNING", tps=tps)


@pytest.fixture
async def held(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start an in-process gateway whose hold queue signals a fake operator."""
    # Held boto3 calls block their threads: leave threads for the others (and for /metrics).
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=32))
    started: list[Local] = []

    async def start(*args: str, tps: float = 50) -> tuple[Local, Operator]:
        operator = Operator()
        path = tmp_path / f"directory-{len(started)}.yaml"
        write(path, directory([cold(tps=tps)]))
        options = command.parser().parse_args(
            [
                *("--directory", str(path), "--host", "127.0.0.1", "--zone", "a"),
                *("--port", "0", "--internal-port", "0", *args),
            ]
        )
        transport = FakeTransport()
        gateway, _ = await command.build(options, transport=transport, activate=operator.activate)
        await gateway.start()
        operator.local = Local(gateway, path, transport)
        started.append(operator.local)
        return operator.local, operator

    yield start
    for local in started:
        await command.shutdown(local.gateway)


async def detect(gw: Local) -> dict[str, Any]:
    return dict(
        await gw.call(
            gw.client().detect_custom_labels, ProjectVersionArn=arn("cold"), Image={"Bytes": png()}
        )
    )


async def refused(gw: Local) -> ClientError:
    with pytest.raises(ClientError) as caught:
        await detect(gw)
    return caught.value


async def sample(gw: Local, name: str, **labels: str) -> float:
    """One sample of the gateway's /metrics (0 if absent)."""
    found = await asyncio.to_thread(processes.metrics, gw)
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def held_calls(gw: Local) -> int:
    entry = gw.gateway.catalog.get("retail", "cold")
    return entry.held if entry is not None else 0


async def until(predicate: Callable[[], bool]) -> None:
    """Poll a condition of the in-process gateway (the test's own timeout bounds it)."""
    while not predicate():  # noqa: ASYNC110 - the state lives in the gateway, not an Event
        await asyncio.sleep(0.02)


async def test_held_calls_are_sent_once_when_the_first_unit_is_ready(held: Any) -> None:
    # tps 2: the new unit's bucket holds 2 tokens, so 6 held calls are paced, not throttled
    gw, operator = await held(tps=2)
    calls = [asyncio.create_task(detect(gw)) for _ in range(6)]
    await until(lambda: held_calls(gw) == 6)
    assert await sample(gw, "kiu_gateway_held_requests", **MODEL) == 6
    assert gw.transport.calls == []
    # one activation for the whole burst (rate-limited per model)
    assert operator.activations == [("retail", "cold")]
    await operator.wake(tps=2)
    answers = await asyncio.gather(*calls)
    assert all(a["CustomLabels"] for a in answers)
    assert len(gw.transport.calls) == 6  # each held call reached a unit exactly once
    assert await sample(gw, "kiu_gateway_held_requests", **MODEL) == 0
    assert await sample(gw, "kiu_gateway_activations_total", **MODEL) == 1
    # each call counted once as demand, held or not
    assert await sample(gw, "kiu_gateway_demand_total", **MODEL) == 6


async def test_a_burst_beyond_the_queue_is_refused_with_a_retry_hint(held: Any) -> None:
    gw, operator = await held("--hold-queue-size", "3")
    calls = [asyncio.create_task(detect(gw)) for _ in range(3)]
    await until(lambda: held_calls(gw) == 3)
    extra = await asyncio.gather(*(refused(gw) for _ in range(2)))
    for error in extra:
        assert error.response["Error"]["Code"] == "ResourceNotReadyException"
        assert "retry in 5 s" in error.response["Error"]["Message"]
        assert error.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "5"
    assert await sample(gw, "kiu_gateway_hold_rejections_total", reason="full") == 2
    await operator.wake(tps=50)
    assert all(a["CustomLabels"] for a in await asyncio.gather(*calls))
    assert len(gw.transport.calls) == 3


async def test_a_call_held_past_the_wait_gets_a_retry_hint(held: Any) -> None:
    gw, operator = await held("--hold-timeout-seconds", "0.5")
    error = await refused(gw)
    assert error.response["Error"]["Code"] == "ResourceNotReadyException"
    assert "no ready inference unit" in error.response["Error"]["Message"]
    assert "retry in 5 s" in error.response["Error"]["Message"]
    assert await sample(gw, "kiu_gateway_hold_rejections_total", reason="timeout") == 1
    assert operator.activations == [("retail", "cold")]
    assert gw.transport.calls == []


async def test_a_stopped_model_answers_its_held_calls_at_once(held: Any) -> None:
    gw, _ = await held()
    call = asyncio.create_task(refused(gw))
    await until(lambda: held_calls(gw) == 1)
    await gw.reload(directory([version("cold", units=[], state="Stopped")]))
    error = await call
    assert error.response["Error"]["Code"] == "ResourceNotReadyException"
    assert "not RUNNING" in error.response["Error"]["Message"]


async def test_shutdown_answers_held_calls_instead_of_dropping_them(held: Any) -> None:
    gw, _ = await held()
    calls = [asyncio.create_task(refused(gw)) for _ in range(4)]
    await until(lambda: held_calls(gw) == 4)
    await command.shutdown(gw.gateway)
    for error in await asyncio.gather(*calls):
        assert error.response["Error"]["Code"] == "ResourceNotReadyException"
        assert "shutting down" in error.response["Error"]["Message"]
        assert error.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "5"


async def test_without_an_operator_nothing_is_held(local: Any) -> None:
    """A directory file has no one to start a unit: the call is refused at once."""
    gw = await local(directory([cold()]))
    error = await refused(gw)
    assert error.response["Error"]["Code"] == "ResourceNotReadyException"
    assert "retry-after" not in error.response["ResponseMetadata"]["HTTPHeaders"]
    assert await sample(gw, "kiu_gateway_hold_rejections_total", reason="full") == 0
