"""The transport to inference units: KServe v2 over gRPC (tritonclient's asyncio client).

One :class:`Channel` per unit, opened when the unit becomes ready and kept for
as long as it stays in the routing table (HTTP/2 multiplexes concurrent calls on
it). The transport is injectable (``Transport``) so that routing can be tested
without sockets; the production one is :class:`TritonTransport`.

Wire contract with a unit (fixed): input ``IMAGE`` BYTES [1, 1] holding one
encoded PNG or JPEG; outputs ``LABELS`` BYTES [1, N], ``CONFIDENCES`` FP32 [1, N]
(0..100, descending), ``THRESHOLDS`` FP32 [1, N] and, for detection models only,
``BOXES`` FP32 [1, N, 4] as (left, top, width, height) ratios.

Exceptions (all :class:`UpstreamError`):

* :class:`Unavailable`: the unit did not answer (connection refused or reset,
  gRPC UNAVAILABLE, model not loaded, queue full); the call is safe to retry on
  another unit, inference has no side effect.
* :class:`DeadlineExceeded`: no answer within the request's deadline.
* :class:`Rejected`: the unit refused the input (gRPC INVALID_ARGUMENT).
* :class:`Failed`: anything else, including an answer that breaks the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a ready unit listens: address, gRPC port and topology zone."""

    host: str
    port: int
    zone: str = ""

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Prediction:
    """A unit's answer, one entry per label, highest confidence first."""

    labels: tuple[str, ...]
    confidences: tuple[float, ...]
    thresholds: tuple[float, ...]
    boxes: tuple[tuple[float, float, float, float], ...] | None = None


class UpstreamError(Exception):
    """A call to a unit failed; the subclasses say how."""


class Unavailable(UpstreamError):  # noqa: N818 - named after the gRPC status
    """The unit did not answer; retrying on another unit is safe."""


class DeadlineExceeded(UpstreamError):  # noqa: N818 - named after the gRPC status
    """The unit did not answer before the deadline."""


class Rejected(UpstreamError):  # noqa: N818 - named after the gRPC status
    """The unit refused the input it was given."""


class Failed(UpstreamError):  # noqa: N818 - named after the gRPC status
    """Any other failure, including an answer that does not follow the contract."""


class Channel(Protocol):
    """A persistent connection to one unit."""

    async def infer(self, *, model: str, image: bytes, seconds: float) -> Prediction: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    """Opens channels to units."""

    def connect(self, endpoint: Endpoint) -> Channel: ...


_UNAVAILABLE = {"StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND", "StatusCode.RESOURCE_EXHAUSTED"}


class TritonChannel:
    """A tritonclient asyncio gRPC client bound to one unit."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._client = InferenceServerClient(url=endpoint.target)

    async def infer(self, *, model: str, image: bytes, seconds: float) -> Prediction:
        tensor = InferInput("IMAGE", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[image]], dtype=np.object_))
        try:
            result = await self._client.infer(
                model_name=model, inputs=[tensor], client_timeout=seconds
            )
        except InferenceServerException as exc:
            status = exc.status() or ""
            if status in _UNAVAILABLE:
                raise Unavailable(status) from None
            if status == "StatusCode.DEADLINE_EXCEEDED":
                raise DeadlineExceeded(status) from None
            if status == "StatusCode.INVALID_ARGUMENT":
                raise Rejected(exc.message() or status) from None
            raise Failed(status or "unknown") from None
        return _prediction(
            labels=result.as_numpy("LABELS"),
            confidences=result.as_numpy("CONFIDENCES"),
            thresholds=result.as_numpy("THRESHOLDS"),
            boxes=result.as_numpy("BOXES"),
        )

    async def close(self) -> None:
        await self._client.close()


class TritonTransport:
    """The production transport: one tritonclient gRPC channel per unit."""

    def connect(self, endpoint: Endpoint) -> Channel:
        return TritonChannel(endpoint)


def _prediction(
    *,
    labels: np.ndarray | None,
    confidences: np.ndarray | None,
    thresholds: np.ndarray | None,
    boxes: np.ndarray | None,
) -> Prediction:
    if labels is None or confidences is None or thresholds is None:
        raise Failed("the unit's answer lacks LABELS, CONFIDENCES or THRESHOLDS")
    names = tuple(
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in labels.reshape(-1)
    )
    conf = tuple(float(v) for v in confidences.reshape(-1))
    thr = tuple(float(v) for v in thresholds.reshape(-1))
    if not len(names) == len(conf) == len(thr):
        raise Failed("the unit's outputs differ in length")
    rects = None
    if boxes is not None:
        flat = boxes.reshape(-1, 4) if boxes.size else np.zeros((0, 4), dtype=np.float32)
        if len(flat) != len(names):
            raise Failed("the unit's BOXES differ in length from its LABELS")
        rects = tuple((float(a), float(b), float(c), float(d)) for a, b, c, d in flat.tolist())
    return Prediction(labels=names, confidences=conf, thresholds=thr, boxes=rects)
