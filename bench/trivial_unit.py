"""A trivial unit: KServe v2 over gRPC answering every inference with one fixed prediction.

It does not read the image, so a gateway in front of it spends its time on the
gateway's own work; that gives the gateway's ceiling. Run as
``python -m bench.trivial_unit --port N``; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

LABELS = (b"circle", b"square", b"star")
CONFIDENCES = (91.5, 40.0, 3.0)
THRESHOLDS = (50.0, 35.0, 50.0)


def _bytes_tensor(values: tuple[bytes, ...]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def _fp32_tensor(values: tuple[float, ...]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        count = len(LABELS)
        self._outputs = [
            service_pb2.ModelInferResponse.InferOutputTensor(
                name="LABELS", datatype="BYTES", shape=[1, count]
            ),
            service_pb2.ModelInferResponse.InferOutputTensor(
                name="CONFIDENCES", datatype="FP32", shape=[1, count]
            ),
            service_pb2.ModelInferResponse.InferOutputTensor(
                name="THRESHOLDS", datatype="FP32", shape=[1, count]
            ),
        ]
        self._raw = [_bytes_tensor(LABELS), _fp32_tensor(CONFIDENCES), _fp32_tensor(THRESHOLDS)]

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return service_pb2.ModelReadyResponse(ready=True)

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        return service_pb2.ModelInferResponse(
            model_name=request.model_name,
            id=request.id,
            outputs=self._outputs,
            raw_output_contents=self._raw,
        )


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
