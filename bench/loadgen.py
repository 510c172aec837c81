"""An asyncio load generator: open loop at a fixed rate, closed loop at a fixed concurrency.

A *call* is an async function that makes one request and returns its outcome
(``"ok"`` or an error name). Clients here:

* :class:`Direct`: KServe v2 ``ModelInfer`` on a unit with tritonclient's asyncio
  gRPC client, one channel, exactly as the gateway calls units;
* :class:`AwsJson`: ``DetectCustomLabels`` on the gateway as boto3 sends it
  (the same body and SigV4 headers, made by botocore's signer), over aiohttp;
* :class:`Rest`: the native REST ``:detect`` with the raw image, SigV4-signed;
* :class:`Get`: a plain GET (the gateway's ``/healthz``), the HTTP floor.

Requests are signed once per client and sent repeatedly (read-only calls may
repeat within the signature's validity, as a retrying boto3 client's do), so the
generator spends its time sending, not signing. Every load is bounded in count
and time and stops by itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
from tests.gateway.signing import sign
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from bench import common

Call = Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Sample:
    sent: float  # seconds from the start of the load
    #: Seconds to the answer from when the call was due: its scheduled send time in an
    #: open loop (so the generator's own lateness counts, as a user waiting would see
    #: it: no coordinated omission), the actual send in a closed loop.
    latency: float
    lag: float  # open loop: how late the call left against its schedule
    outcome: str  # "ok" or an error name


class Direct:
    """ModelInfer on one unit over one gRPC channel."""

    def __init__(self, target: str, model: str, image: bytes) -> None:
        self._client = InferenceServerClient(url=target)
        self._model = model
        self._input = InferInput("IMAGE", [1, 1], "BYTES")
        self._input.set_data_from_numpy(np.array([[image]], dtype=np.object_))

    async def __call__(self) -> str:
        try:
            result = await self._client.infer(
                model_name=self._model, inputs=[self._input], client_timeout=30
            )
        except InferenceServerException as exc:
            return exc.status() or "InferenceServerException"
        return "ok" if result.as_numpy("LABELS") is not None else "NoLabels"

    async def close(self) -> None:
        await self._client.close()


class _Http:
    def __init__(self, concurrency: int) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(2 * concurrency, 16)),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> str:
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
                if response.status == 200:
                    return "ok"
                try:
                    return str(json.loads(payload)["__type"])
                except (ValueError, KeyError):
                    return f"HTTP{response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__

    async def close(self) -> None:
        await self._session.close()


class AwsJson(_Http):
    """DetectCustomLabels as boto3 sends it: AWS JSON 1.1 body, SigV4 by botocore."""

    def __init__(
        self,
        base_url: str,
        arn: str,
        image: bytes,
        *,
        concurrency: int,
        key: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(concurrency)
        self.url = base_url + "/"
        self.body = self.body_of(arn, image)
        self.headers = sign(
            url=self.url,
            body=self.body,
            headers={
                "X-Amz-Target": "RekognitionService.DetectCustomLabels",
                "Content-Type": "application/x-amz-json-1.1",
            },
            **({"key": key[0], "secret": key[1]} if key else {}),
        )
        self.headers.pop("host", None)

    @staticmethod
    def body_of(arn: str, image: bytes) -> bytes:
        """The AWS JSON body of DetectCustomLabels with the image inline."""
        return json.dumps(
            {"ProjectVersionArn": arn, "Image": {"Bytes": base64.b64encode(image).decode()}}
        ).encode()

    async def __call__(self) -> str:
        return await self._post(self.url, self.body, self.headers)


class Rest(_Http):
    """The native REST API with the raw PNG as the body, SigV4-signed."""

    def __init__(
        self, base_url: str, namespace: str, name: str, image: bytes, *, concurrency: int
    ) -> None:
        super().__init__(concurrency)
        self.url = f"{base_url}/v1/namespaces/{namespace}/projectversions/{name}:detect"
        self.body = image
        self.headers = sign(url=self.url, body=image, headers={"Content-Type": "image/png"})
        self.headers.pop("host", None)

    async def __call__(self) -> str:
        return await self._post(self.url, self.body, self.headers)


class Get(_Http):
    def __init__(self, url: str, *, concurrency: int) -> None:
        super().__init__(concurrency)
        self.url = url

    async def __call__(self) -> str:
        try:
            async with self._session.get(self.url) as response:
                await response.read()
                return "ok" if response.status == 200 else f"HTTP{response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__


async def closed_loop(
    call: Call, *, concurrency: int, seconds: float, max_calls: int = 1_000_000
) -> tuple[list[Sample], float]:
    """`concurrency` workers each calling back to back for `seconds`; (samples, window)."""
    samples: list[Sample] = []
    start = time.perf_counter()
    deadline = start + seconds
    budget = [max_calls]

    async def worker() -> None:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            sent = time.perf_counter()
            outcome = await call()
            samples.append(Sample(sent - start, time.perf_counter() - sent, 0.0, outcome))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - start


async def open_loop(
    call: Call, *, rate: float, seconds: float, call_timeout: float = 30.0
) -> tuple[list[Sample], float]:
    """Calls leave every 1/rate s whether or not earlier ones returned; (samples, window)."""
    return await scheduled(
        call, [i / rate for i in range(int(rate * seconds))], call_timeout=call_timeout
    )


async def scheduled(
    call: Call, times: list[float], *, call_timeout: float = 30.0, start: float | None = None
) -> tuple[list[Sample], float]:
    """One call at each time (seconds from `start`, a perf_counter reading; default now),
    open loop; (samples, window). Latency counts from each call's scheduled time."""
    samples: list[Sample] = []
    if start is None:
        start = time.perf_counter()

    async def one(at: float) -> None:
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.perf_counter()
        try:
            outcome = await asyncio.wait_for(call(), call_timeout)
        except TimeoutError:
            outcome = "ClientTimeout"
        due = start + at
        samples.append(Sample(sent - start, time.perf_counter() - due, sent - due, outcome))

    await asyncio.gather(*(one(at) for at in times))
    samples.sort(key=lambda s: s.sent)
    return samples, time.perf_counter() - start


class RoundRobin:
    """Spread calls evenly over several clients (gateway replicas behind a balancer)."""

    def __init__(self, calls: list[Call]) -> None:
        self._calls = calls
        self._next = 0

    async def __call__(self) -> str:
        call = self._calls[self._next % len(self._calls)]
        self._next += 1
        return await call()


def stats(samples: list[Sample], window: float, *, outcome: str = "ok") -> dict[str, Any]:
    """Throughput and latency (ms) of the samples with `outcome`, and every outcome's count."""
    chosen = [s.latency * 1000 for s in samples if s.outcome == outcome]
    lags = [s.lag * 1000 for s in samples]
    return {
        "calls": len(samples),
        "outcomes": dict(Counter(s.outcome for s in samples)),
        "window_s": round(window, 3),
        "rate_per_s": round(len(chosen) / window, 2) if window > 0 else None,
        "p50_ms": _round(common.percentile(chosen, 50)),
        "p90_ms": _round(common.percentile(chosen, 90)),
        "p99_ms": _round(common.percentile(chosen, 99)),
        "mean_ms": _round(sum(chosen) / len(chosen)) if chosen else None,
        "lag_p99_ms": _round(common.percentile(lags, 99)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
