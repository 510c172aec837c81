"""A unit dies under load: every call succeeds or is throttled, none fails."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiu.imaging import scenes

from . import load, processes
from .conftest import arn, directory, version, write


@pytest.fixture
def doomed(tmp_path: Path) -> Iterator[list[processes.Unit]]:
    """Three classifier units of our own (one will be killed), zones a, b, c."""
    with processes.units(
        [("shapes-classifier", "a"), ("shapes-classifier", "b"), ("shapes-classifier", "c")],
        tmp_path,
    ) as started:
        yield started


async def test_killing_a_unit_mid_load_fails_no_call(
    doomed: list[processes.Unit], tmp_path: Path
) -> None:
    path = tmp_path / "directory.yaml"
    content = directory([version("shoes-v3", units=[], tps=20)])
    content["projectVersions"][0]["units"] = [u.entry() for u in doomed]
    write(path, content)
    image = next(scenes.scenes("classification", seed=4, count=1)).image
    with processes.gateway(path, tmp_path, "--eject-seconds", "30") as gw:
        run = asyncio.create_task(
            load.offer([(gw.url, 30.0)], arn=arn("shoes-v3"), image=image, seconds=6)
        )
        await asyncio.sleep(2.0)
        # the gateway's own zone is a: that unit carries the traffic while idle
        doomed[0].process.signal(signal.SIGKILL)
        results = await run
        counts = load.tally(results)
        print(f"\nunit killed mid-load: {dict(counts)}")
        assert set(counts) <= {
            "ok",
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
        }, counts
        assert counts["ok"] >= 0.9 * len(results), counts
        served = [processes.served(u) for u in doomed[1:]]
        assert sum(served) > 0
        metrics = processes.metrics(gw)
        assert metrics["kiu_gateway_unit_retries_total", ()] >= 1
        assert metrics["kiu_gateway_unit_failures_total", (("reason", "unavailable"),)] >= 1

        # discovery reports the unit gone: the limit falls with it
        content["projectVersions"][0]["units"][0]["ready"] = False
        write(path, content)
        key = (("namespace", "retail"), ("projectversion", "shoes-v3"))
        processes.wait_until(
            lambda: processes.metrics(gw)["kiu_gateway_tps_limit", key] == 40.0,
            timeout=10,
            what="the TPS limit to fall to 2 units",
        )
        after = await load.offer([(gw.url, 10.0)], arn=arn("shoes-v3"), image=image, seconds=2)
        assert load.tally(after) == {"ok": len(after)}


async def test_a_frozen_unit_costs_half_a_deadline_not_a_failure(
    doomed: list[processes.Unit], tmp_path: Path
) -> None:
    """A unit that hangs without dying refuses nothing: the first attempt's share of the
    deadline runs out, the unit is avoided and the call is answered by another one."""
    path = tmp_path / "directory.yaml"
    content = directory([version("shoes-v3", units=[], tps=20)])
    content["projectVersions"][0]["units"] = [u.entry() for u in doomed]
    write(path, content)
    image = next(scenes.scenes("classification", seed=5, count=1)).image
    with processes.gateway(
        path, tmp_path, "--request-deadline", "4", "--eject-seconds", "30"
    ) as gw:
        # the gateway's own zone is a: that unit takes the calls, and hangs
        doomed[0].process.signal(signal.SIGSTOP)
        try:
            results = await load.offer([(gw.url, 5.0)], arn=arn("shoes-v3"), image=image, seconds=4)
        finally:
            doomed[0].process.signal(signal.SIGCONT)
        counts = load.tally(results)
        print(f"\nunit frozen mid-load: {dict(counts)}")
        assert counts == {"ok": len(results)}, counts
        slow = [r for r in results if r.latency > 1.5]
        assert slow, "no call waited on the frozen unit"
        assert all(r.latency < 4.0 for r in results), max(r.latency for r in results)
        metrics = processes.metrics(gw)
        assert metrics["kiu_gateway_unit_failures_total", (("reason", "deadline"),)] >= 1
        assert metrics["kiu_gateway_unit_retries_total", ()] >= 1
