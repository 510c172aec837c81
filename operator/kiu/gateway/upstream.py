"""The transport to inference units: KServe v2 ``ModelInfer`` over gRPC (grpc.aio).

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

import struct
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from tritonclient.grpc import (
    MAX_GRPC_MESSAGE_SIZE,
    KeepAliveOptions,
    service_pb2,
    service_pb2_grpc,
)


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


_UNAVAILABLE = frozenset(
    (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED)
)
_KEEPALIVE = KeepAliveOptions()
#: The channel settings tritonclient's own client uses (message size, keep-alive).
_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.keepalive_time_ms", _KEEPALIVE.keepalive_time_ms),
    ("grpc.keepalive_timeout_ms", _KEEPALIVE.keepalive_timeout_ms),
    ("grpc.keepalive_permit_without_calls", _KEEPALIVE.keepalive_permit_without_calls),
    ("grpc.http2.max_pings_without_data", _KEEPALIVE.http2_max_pings_without_data),
)
_IMAGE_INPUT = service_pb2.ModelInferRequest.InferInputTensor(
    name="IMAGE", datatype="BYTES", shape=[1, 1]
)


class TritonChannel:
    """KServe v2 ``ModelInfer`` over one gRPC channel to one unit.

    The request is built directly: the image goes into ``raw_input_contents``
    behind its 4-byte length, as tritonclient would serialise a BYTES tensor, and
    the answer's tensors are read from the response message, without the numpy
    object arrays tritonclient goes through (they cost more CPU than the gateway's
    own work per call). Same protocol, same bytes on the wire.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self._channel = grpc.aio.insecure_channel(endpoint.target, options=_CHANNEL_OPTIONS)
        self._infer = service_pb2_grpc.GRPCInferenceServiceStub(self._channel).ModelInfer

    async def infer(self, *, model: str, image: bytes, seconds: float) -> Prediction:
        request = service_pb2.ModelInferRequest(
            model_name=model,
            inputs=[_IMAGE_INPUT],
            raw_input_contents=[len(image).to_bytes(4, "little") + image],
        )
        try:
            response = await self._infer(request, timeout=seconds)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in _UNAVAILABLE:
                raise Unavailable(str(code)) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded(str(code)) from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise Rejected(exc.details() or str(code)) from None
            raise Failed(str(code)) from None
        return prediction(response)

    async def close(self) -> None:
        await self._channel.close()


class TritonTransport:
    """The production transport: one gRPC channel per unit."""

    def connect(self, endpoint: Endpoint) -> Channel:
        return TritonChannel(endpoint)


def prediction(response: Any) -> Prediction:
    """A ``ModelInferResponse`` read as the wire contract says; Failed if it breaks it.

    Outputs come as ``raw_output_contents``, one per output in order (what Triton
    and kiu's units send, and all tritonclient reads besides BYTES).
    """
    raw = response.raw_output_contents
    if len(raw) != len(response.outputs):
        raise Failed("the unit's answer does not carry its outputs as raw contents")
    tensors: dict[str, Any] = {}
    for output, content in zip(response.outputs, raw, strict=True):
        if output.datatype == "BYTES":
            tensors[output.name] = _strings(content)
        elif output.datatype == "FP32":
            if len(content) % 4:
                raise Failed(f"the unit's {output.name} is not a whole number of FP32")
            tensors[output.name] = struct.unpack(f"<{len(content) // 4}f", content)
    labels, confidences, thresholds = (tensors.get(n) for n in _OUTPUTS)
    if labels is None or confidences is None or thresholds is None:
        raise Failed("the unit's answer lacks LABELS, CONFIDENCES or THRESHOLDS")
    if not len(labels) == len(confidences) == len(thresholds):
        raise Failed("the unit's outputs differ in length")
    boxes = tensors.get("BOXES")
    rects = None
    if boxes is not None:
        if len(boxes) != 4 * len(labels):
            raise Failed("the unit's BOXES differ in length from its LABELS")
        rects = tuple(
            (boxes[j], boxes[j + 1], boxes[j + 2], boxes[j + 3]) for j in range(0, len(boxes), 4)
        )
    return Prediction(
        labels=tuple(v.decode("utf-8", "replace") for v in labels),
        confidences=tuple(confidences),
        thresholds=tuple(thresholds),
        boxes=rects,
    )


_OUTPUTS = ("LABELS", "CONFIDENCES", "THRESHOLDS")


def _strings(raw: bytes) -> list[bytes]:
    """A serialised BYTES tensor: each element a 4-byte little-endian length, then its bytes."""
    out = []
    pos, size = 0, len(raw)
    while pos < size:
        if pos + 4 > size:
            raise Failed("the unit's BYTES tensor is truncated")
        (length,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + length > size:
            raise Failed("the unit's BYTES tensor is truncated")
        out.append(raw[pos : pos + length])
        pos += length
    return out
