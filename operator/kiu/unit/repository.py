"""A Triton model repository on disk, read the way Triton reads it.

A repository is a directory of models; a model is a directory holding a
`config.pbtxt` (Triton's `ModelConfig` protobuf in text form) and numbered
version directories. Only what the cpu runtime needs is covered: configs,
the version Triton's default policy serves (the highest), and the names,
datatypes and shapes Triton reports in model metadata.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from google.protobuf import json_format, text_format


def _model_config_module() -> ModuleType:
    """tritonclient's generated `model_config_pb2`, loaded without `tritonclient.grpc`.

    Importing that package registers Triton's gRPC service messages in the
    default protobuf pool under the package `inference`; kserve registers its
    own copy of the same messages there, and the second registration fails.
    The model-config file alone clashes with neither, so the cpu runtime
    (kserve) and clients (tritonclient) can both use it.
    """
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tritonclient is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("kiu_triton_model_config_pb2", path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


model_config_pb2 = _model_config_module()

CONFIG_FILE = "config.pbtxt"
#: The ensemble parameter that tells callers what the model does.
TASK_PARAMETER = "kiu.task"
TASKS = ("classification", "object_detection")


class RepositoryError(Exception):
    """The repository does not hold a servable model of that name."""


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the KServe v2 protocol names it."""

    name: str
    datatype: str  # KServe v2 name: BYTES, FP32, ...
    dims: tuple[int, ...]  # without the batch dimension

    def shape(self, *, batched: bool) -> list[int]:
        """The shape Triton reports in metadata: -1 for the batch dimension when batched."""
        return [-1, *self.dims] if batched else list(self.dims)


def read_config(repository: Path, name: str) -> Any:
    """The parsed `ModelConfig` of model `name`, with its name checked against the directory."""
    path = repository / name / CONFIG_FILE
    if not path.is_file():
        raise RepositoryError(f"no model {name!r} in {repository} (missing {path})")
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    if config.name and config.name != name:
        raise RepositoryError(f"{path} names the model {config.name!r}, not {name!r}")
    config.name = name
    return config


def version_directory(repository: Path, config: Any, *, version: int = -1) -> Path:
    """The directory of `version`, or of the highest version (Triton's default policy) for -1."""
    directory: Path = repository / str(config.name)
    versions = sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise RepositoryError(f"model {config.name!r} has no version directory in {directory}")
    chosen = versions[-1] if version < 0 else version
    if chosen not in versions:
        raise RepositoryError(f"model {config.name!r} has no version {chosen}")
    return directory / str(chosen)


def config_json(config: Any) -> dict[str, Any]:
    """The config as the JSON Triton serves at /v2/models/<name>/config and passes to
    Python-backend models as args["model_config"]."""
    result: dict[str, Any] = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return result


def datatype(data_type: int) -> str:
    """Triton's `TYPE_FP32` -> the protocol's `FP32`; `TYPE_STRING` is `BYTES` on the wire."""
    name = str(model_config_pb2.DataType.Name(data_type)).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def tensor_specs(tensors: Any) -> tuple[TensorSpec, ...]:
    """The `input` or `output` list of a config as protocol tensor descriptions."""
    return tuple(TensorSpec(t.name, datatype(t.data_type), tuple(t.dims)) for t in tensors)


def string_parameter(config: Any, key: str) -> str | None:
    """A `parameters { key: ... value { string_value: ... } }` entry of a config."""
    if key in config.parameters:
        return str(config.parameters[key].string_value)
    return None
