"""The cpu runtime's servers: KServe v2 over gRPC and HTTP, and Prometheus metrics.

kserve implements the protocol: the v2 REST routes, the gRPC servicer,
request decoding and the mapping of errors to status codes. This module adds
what a Triton client expects and kserve lacks:

- readiness that is false until the model is loaded and again while stopping
  (kserve's server answers ready whenever it runs);
- the ModelConfig RPC and `/v2/models/<name>/config`, which serve the model's
  `config.pbtxt` (tritonclient's `get_model_config`);
- binary BYTES tensors over HTTP: kserve's decoder turns them into JSON strings,
  which fails on anything that is not UTF-8, such as an encoded image;
- a listen address, and one shutdown for both protocols on SIGTERM: stop
  accepting, finish requests in flight, exit 0.

kserve's gRPC messages and tritonclient's live in the same protobuf package
(`inference`) and cannot be loaded in one process, so nothing here imports
`tritonclient.grpc` (see `kiu.unit.repository`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from kserve import InferInput, InferOutput, InferRequest, InferResponse, Model, ModelRepository
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput, ModelNotFound
from kserve.model_server import app as kserve_app
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer
from prometheus_client import Counter, Histogram, start_http_server

from kiu.imaging.preprocessing import InvalidImageError
from kiu.unit import models, repository

log = logging.getLogger("kiu.unit")

#: Room for a batch of 8 images of the reference service's 4 MB limit.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

REQUESTS = Counter(
    "kiu_unit_requests", "Inference requests answered, by outcome.", ["model", "outcome"]
)
ITEMS = Counter("kiu_unit_inference_items", "Batch items inferred successfully.", ["model"])
DURATION = Histogram(
    "kiu_unit_request_duration_seconds",
    "Time from a decoded request to its outputs, including queueing for a batch.",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class UnitModel(Model):  # type: ignore[misc]  # kserve is untyped
    """A repository model as kserve sees it: metadata from the config, checked inputs."""

    def __init__(self, model: models.Model) -> None:
        super().__init__(model.name)
        self.model = model

    def _describe(self, specs: tuple[repository.TensorSpec, ...]) -> list[dict[str, Any]]:
        batched = self.model.max_batch_size > 0
        return [
            {"name": s.name, "datatype": s.datatype, "shape": s.shape(batched=batched)}
            for s in specs
        ]

    def get_input_types(self) -> list[dict[str, Any]]:
        return self._describe(self.model.inputs)

    def get_output_types(self) -> list[dict[str, Any]]:
        return self._describe(self.model.outputs)

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        started = time.perf_counter()
        outcome = "error"
        try:
            response, items = await self._infer(payload)
            outcome = "success"
            ITEMS.labels(self.name).inc(items)
            return response
        except InvalidInput:
            outcome = "invalid"
            raise
        finally:
            REQUESTS.labels(self.name, outcome).inc()
            DURATION.labels(self.name).observe(time.perf_counter() - started)

    async def _infer(self, payload: InferRequest) -> tuple[InferResponse, int]:
        try:
            self.model.check({t.name: (t.datatype, t.shape) for t in payload.inputs})
            inputs = {t.name: t.as_numpy() for t in payload.inputs}
        except models.RequestError as error:
            raise InvalidInput(str(error)) from error
        except Exception as error:  # malformed tensor contents: wrong length, bad encoding
            raise InvalidInput(f"cannot read the input tensors: {error}") from error
        requested = [output.name for output in payload.request_outputs or []]
        known = [spec.name for spec in self.model.outputs]
        unknown = sorted(set(requested) - set(known))
        if unknown:
            raise InvalidInput(f"model {self.name!r} has no outputs {unknown}")
        try:
            arrays = await self.model.infer(inputs)
        except InvalidImageError as error:
            raise InvalidInput(str(error)) from error
        datatypes = {spec.name: spec.datatype for spec in self.model.outputs}
        outputs = []
        for name in requested or known:
            output = InferOutput(
                name=name, shape=list(arrays[name].shape), datatype=datatypes[name]
            )
            output.set_data_from_numpy(arrays[name], binary_data=True)
            outputs.append(output)
        response = InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )
        items = len(next(iter(inputs.values()))) if self.model.max_batch_size > 0 else 1
        return response, items


class UnitDataPlane(DataPlane):  # type: ignore[misc]
    """kserve's data plane with Triton's readiness and platform, and raw binary tensors."""

    async def ready(self) -> bool:
        served = self.model_registry.get_models().values()
        return bool(served) and all(model.ready for model in served)

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata: dict[str, Any] = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        if isinstance(model, UnitModel):
            metadata["platform"] = model.model.platform
        return metadata

    def decode_inference_request(
        self, body: Any, headers: dict[str, str], model_name: str
    ) -> InferRequest:
        length = headers.get("inference-header-content-length")
        if isinstance(body, bytes) and length is not None:
            request = _binary_request(body, header_length=int(length), model_name=model_name)
            if request is not None:
                return request
        request_: InferRequest = super().decode_inference_request(body, headers, model_name)
        return request_


def _binary_request(body: bytes, *, header_length: int, model_name: str) -> InferRequest | None:
    """A request whose every input uses the binary tensor extension, with the bytes kept raw;
    None when some input is JSON, which kserve's own decoder handles."""
    try:
        header = json.loads(body[:header_length])
        specs = header["inputs"]
        sizes = [int(spec["parameters"]["binary_data_size"]) for spec in specs]
    except (ValueError, KeyError, TypeError):
        return None
    if header_length + sum(sizes) != len(body):
        raise InvalidInput("binary_data_size of the inputs does not add up to the request body")
    raw, offset = [], header_length
    for size in sizes:
        raw.append(body[offset : offset + size])
        offset += size
    return InferRequest(
        model_name=model_name,
        request_id=header.get("id"),
        infer_inputs=[
            InferInput(spec["name"], spec["shape"], spec["datatype"], parameters=spec["parameters"])
            for spec in specs
        ],
        raw_inputs=raw,
        parameters=header.get("parameters"),
        request_outputs=[
            RequestedOutput(output["name"], output.get("parameters"))
            for output in header.get("outputs", [])
        ]
        or None,
    )


def _model_config_messages() -> tuple[Any, Any]:
    """ModelConfigRequest and ModelConfigResponse of Triton's service, in a private pool.

    kserve's protocol definition has no ModelConfig RPC, and tritonclient's,
    which has, cannot be loaded beside kserve's; these two messages are all
    the RPC needs.
    """
    config_file = repository.model_config_pb2.DESCRIPTOR
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(config_file.serialized_pb)
    service = descriptor_pb2.FileDescriptorProto(
        name="kiu/model_config_rpc.proto",
        package="inference",
        syntax="proto3",
        dependency=[config_file.name],
    )
    text, message = descriptor_pb2.FieldDescriptorProto.TYPE_STRING, 11
    request = service.message_type.add(name="ModelConfigRequest")
    request.field.add(name="name", number=1, type=text)
    request.field.add(name="version", number=2, type=text)
    response = service.message_type.add(name="ModelConfigResponse")
    response.field.add(name="config", number=1, type=message, type_name=".inference.ModelConfig")
    pool.Add(service)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}"))
        for name in ("ModelConfigRequest", "ModelConfigResponse")
    )


def _model_config_handler(model: models.Model) -> grpc.GenericRpcHandler:
    request_type, response_type = _model_config_messages()

    async def model_config(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.name != model.name:
            raise ModelNotFound(request.name)
        response = response_type()
        response.config.ParseFromString(model.config.SerializeToString())
        return response

    return grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {
            "ModelConfig": grpc.unary_unary_rpc_method_handler(
                model_config,
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )
        },
    )


def _grpc_server(
    dataplane: DataPlane,
    extension: ModelRepositoryExtension,
    model: models.Model,
    *,
    address: str,
) -> grpc.aio.Server:
    server = grpc.aio.server(
        interceptors=(ExceptionToStatusInterceptor(),),
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(dataplane, extension), server
    )
    server.add_generic_rpc_handlers((_model_config_handler(model),))
    server.add_insecure_port(address)
    return server


def _rest_app(
    dataplane: DataPlane, extension: ModelRepositoryExtension, model: models.Model
) -> FastAPI:
    """kserve's FastAPI application with its v2 routes, plus the model config route."""
    RESTServer(FASTAPI_APP_IMPORT_STRING, dataplane, extension, http_port=0).create_application()
    config = repository.config_json(model.config)

    async def model_config(model_name: str) -> dict[str, Any]:
        if model_name != model.name:
            raise ModelNotFound(model_name)
        return config

    app: FastAPI = kserve_app
    app.add_api_route("/v2/models/{model_name}/config", model_config, methods=["GET"])
    return app


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the unit stops both protocols together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ModelLoadError(Exception):
    """The model, its steps or its contract do not load: nothing is served."""


async def serve(
    *,
    model_repository: Path,
    model_name: str,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    grace_period: float,
) -> int:
    """Load the model, serve it until SIGTERM or SIGINT, then drain; returns the exit code.

    Raises ModelLoadError, with the loader's message, when the model cannot be loaded.
    """
    try:
        model = models.load_model(model_repository, model_name)
    except Exception as error:  # onnxruntime, protobuf and file errors have many types
        raise ModelLoadError(f"cannot load model {model_name!r}: {error}") from error
    unit = UnitModel(model)
    registry = ModelRepository()
    registry.update(unit)
    dataplane = UnitDataPlane(model_registry=registry)
    extension = ModelRepositoryExtension(model_registry=registry)

    grpc_server = _grpc_server(dataplane, extension, model, address=f"{host}:{grpc_port}")
    http_server = _HttpServer(
        uvicorn.Config(
            _rest_app(dataplane, extension, model),
            host=host,
            port=http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(grace_period),
        )
    )
    metrics_server, metrics_thread = start_http_server(metrics_port, addr=host)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)

    await grpc_server.start()
    http_task = asyncio.create_task(http_server.serve())
    unit.ready = True
    log.info(
        "serving %s (%s) on %s: http %d, grpc %d, metrics %d",
        model.name,
        model.platform,
        host,
        http_port,
        grpc_port,
        metrics_port,
    )
    stop_task = asyncio.create_task(stopping.wait())
    await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    unit.ready = False
    log.info("stopping: finishing requests in flight (up to %gs)", grace_period)
    http_server.should_exit = True
    await grpc_server.stop(grace_period)
    await http_task
    stop_task.cancel()
    metrics_server.shutdown()
    metrics_thread.join()
    log.info("stopped")
    return 0 if stopping.is_set() else 1
