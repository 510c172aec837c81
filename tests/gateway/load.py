"""An open-loop load generator: signed DetectCustomLabels calls at a fixed rate.

Open loop (calls leave on schedule whether or not earlier ones returned), so the
offered rate is the one asked for, as with many independent clients. One
request is signed once and sent repeatedly: read-only calls may repeat within
the signature's validity.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp

from .signing import sign


@dataclass(frozen=True)
class Result:
    sent: float  # seconds since the start of the run
    latency: float
    status: int
    error: str  # "" on success, else the error name


def detect_request(url: str, arn: str, image: bytes) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"ProjectVersionArn": arn, "Image": {"Bytes": base64.b64encode(image).decode()}}
    ).encode()
    headers = sign(
        url=url,
        body=body,
        headers={
            "X-Amz-Target": "RekognitionService.DetectCustomLabels",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    headers.pop("host", None)
    return body, headers


async def offer(
    targets: list[tuple[str, float]],
    *,
    arn: str,
    image: bytes,
    seconds: float,
    call_timeout: float = 30.0,
) -> list[Result]:
    """Send to each (gateway URL, calls per second) for ``seconds``; every result."""
    results: list[Result] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=call_timeout)
    ) as session:
        start = time.monotonic()

        async def one(url: str, body: bytes, headers: dict[str, str], at: float) -> None:
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    error = "" if response.status == 200 else json.loads(payload)["__type"]
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, error = 0, type(exc).__name__
            results.append(Result(sent - start, time.monotonic() - sent, status, error))

        tasks = []
        for url, rate in targets:
            body, headers = detect_request(url + "/", arn, image)
            count = int(rate * seconds)
            tasks += [one(url + "/", body, headers, i / rate) for i in range(count)]
        await asyncio.gather(*tasks)
    results.sort(key=lambda r: r.sent)
    return results


def tally(results: list[Result]) -> Counter[str]:
    return Counter(r.error or "ok" for r in results)
