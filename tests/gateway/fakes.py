"""In-memory units for routing and data-plane tests (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kiu.gateway import upstream

PREDICTION = upstream.Prediction(
    labels=("circle", "square", "star"),
    confidences=(91.5, 40.0, 3.0),
    thresholds=(50.0, 35.0, 50.0),
    boxes=((0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.2, 0.2), (0.0, 0.0, 1.0, 1.0)),
)


class FakeChannel:
    def __init__(self, transport: FakeTransport, endpoint: upstream.Endpoint) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.calls = 0
        self.closed = False

    async def infer(self, *, model: str, image: bytes, seconds: float) -> upstream.Prediction:
        self.calls += 1
        self.transport.calls.append(self.endpoint)
        behaviour = self.transport.behaviour.get(self.endpoint)
        if behaviour is not None:
            return await behaviour()
        if self.transport.gate is not None:
            await self.transport.gate.wait()
        return PREDICTION

    async def close(self) -> None:
        self.closed = True


class FakeTransport:
    def __init__(self) -> None:
        self.channels: dict[upstream.Endpoint, list[FakeChannel]] = {}
        self.calls: list[upstream.Endpoint] = []
        self.behaviour: dict[
            upstream.Endpoint, Callable[[], asyncio.Future[upstream.Prediction]]
        ] = {}
        self.gate: asyncio.Event | None = None

    def connect(self, endpoint: upstream.Endpoint) -> FakeChannel:
        channel = FakeChannel(self, endpoint)
        self.channels.setdefault(endpoint, []).append(channel)
        return channel


def unavailable() -> Callable[[], asyncio.Future[upstream.Prediction]]:
    async def fail() -> upstream.Prediction:
        raise upstream.Unavailable("StatusCode.UNAVAILABLE")

    return fail  # type: ignore[return-value]
