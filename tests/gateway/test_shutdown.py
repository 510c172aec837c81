"""SIGTERM: the gateway stops accepting, finishes what it accepted, then exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp

from kiu.imaging import scenes

from . import load, processes
from .conftest import arn, directory, version, write

CALLS = 24


async def test_sigterm_drops_no_accepted_request(
    real_units: dict[str, list[processes.Unit]], tmp_path: Path
) -> None:
    unit = real_units["classifier"][1]
    path = tmp_path / "directory.yaml"
    content = directory([version("shoes-v3", units=[], tps=1000)])
    content["projectVersions"][0]["units"] = [unit.entry()]
    write(path, content)
    image = next(scenes.scenes("classification", seed=6, count=1)).image
    gw = processes.start_gateway(path, tmp_path, "--shutdown-timeout", "60")
    body, headers = load.detect_request(gw.url + "/", arn("shoes-v3"), image)
    # The unit is paused: every call is accepted and stays in flight until it resumes.
    unit.process.signal(signal.SIGSTOP)
    try:
        async with aiohttp.ClientSession() as session:

            async def call() -> tuple[int, float]:
                async with session.post(gw.url + "/", data=body, headers=headers) as response:
                    answer = await response.read()
                    assert response.status == 200, answer
                    return response.status, time.monotonic()

            calls = [asyncio.create_task(call()) for _ in range(CALLS)]
            # the scrape itself is one more request in flight
            await asyncio.to_thread(
                processes.wait_until,
                lambda: (
                    processes.metrics(gw)["kiu_gateway_http_in_flight_requests", ()] >= CALLS + 1
                ),
                timeout=30,
                what=f"{CALLS} requests in flight",
            )
            terminated = time.monotonic()
            gw.process.signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert not processes.answers(f"{gw.url}/"), "still accepting after SIGTERM"
            unit.process.signal(signal.SIGCONT)
            answers = await asyncio.gather(*calls)
        assert [status for status, _ in answers] == [200] * CALLS
        assert all(done > terminated for _, done in answers)
        assert gw.process.popen.wait(timeout=60) == 0
    finally:
        unit.process.signal(signal.SIGCONT)
        gw.process.stop()
