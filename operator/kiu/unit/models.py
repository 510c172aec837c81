"""The models of a Triton repository, run without Triton: ensembles, ONNX models, kiu steps.

`load_model` turns a repository entry into something that takes and returns
named numpy arrays, following the config as Triton does: an ensemble runs its
steps in dependency order wiring tensors by its input and output maps, an
ONNX model runs on onnxruntime (dynamically batched when its config says so),
and a Python-backend model runs the kiu step its config names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from kiu.unit import repository
from kiu.unit.batcher import DynamicBatcher
from kiu.unit.steps import load_step

Tensors = dict[str, np.ndarray]


class RequestError(ValueError):
    """The request does not fit the model's inputs: a caller error."""


class Model:
    """What every servable model has: its config and the protocol view of its tensors."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.name: str = config.name
        self.inputs = repository.tensor_specs(config.input)
        self.outputs = repository.tensor_specs(config.output)
        self.max_batch_size: int = config.max_batch_size

    @property
    def platform(self) -> str:
        """What Triton reports as the model's platform."""
        if self.config.platform:
            return str(self.config.platform)
        return "onnxruntime_onnx" if self.config.backend == "onnxruntime" else self.config.backend

    def check(self, provided: Mapping[str, tuple[str, Sequence[int]]]) -> None:
        """Reject a request whose tensors (name -> datatype, shape) do not fit the config."""
        expected = {spec.name for spec in self.inputs}
        if set(provided) != expected:
            raise RequestError(
                f"model {self.name!r} takes inputs {sorted(expected)}, got {sorted(provided)}"
            )
        batched = self.max_batch_size > 0
        for spec in self.inputs:
            datatype, shape = provided[spec.name]
            if datatype != spec.datatype:
                raise RequestError(f"input {spec.name!r} must be {spec.datatype}, got {datatype}")
            wanted = spec.shape(batched=batched)
            fits = len(shape) == len(wanted) and all(
                w in (-1, s) for w, s in zip(wanted, shape, strict=True)
            )
            if not fits:
                raise RequestError(
                    f"input {spec.name!r} must have shape {wanted}, got {list(shape)}"
                )
            if batched and not 1 <= shape[0] <= self.max_batch_size:
                raise RequestError(
                    f"batch size {shape[0]} is outside 1..{self.max_batch_size} "
                    f"for model {self.name!r}"
                )

    async def infer(self, inputs: Tensors) -> Tensors:
        """Run the model on checked inputs; returns every output."""
        raise NotImplementedError


class OnnxModel(Model):
    """An ONNX graph on onnxruntime's CPU provider."""

    def __init__(self, config: Any, directory: Path) -> None:
        super().__init__(config)
        path = directory / (config.default_model_filename or "model.onnx")
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
        self._names = [spec.name for spec in self.outputs]
        self._batcher = (
            DynamicBatcher(
                self._run,
                max_batch_size=self.max_batch_size,
                delay=config.dynamic_batching.max_queue_delay_microseconds / 1e6,
            )
            if config.HasField("dynamic_batching") and self.max_batch_size > 0
            else None
        )

    def _run(self, inputs: Tensors) -> Tensors:
        return dict(zip(self._names, self._session.run(self._names, inputs), strict=True))

    async def infer(self, inputs: Tensors) -> Tensors:
        if self._batcher is not None:
            return await self._batcher.submit(inputs)
        return await asyncio.to_thread(self._run, inputs)


def session_options() -> onnxruntime.SessionOptions:
    """Worker threads that sleep when idle instead of spinning for their next task.

    onnxruntime's default has each intra-op thread spin after a run: on a unit
    that answers one image at a time, that spinning doubled the CPU a call costs
    (bench/README.md, unit CPU per call) and takes cores from whatever shares them.
    """
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class PythonModel(Model):
    """A Python-backend model whose `kiu.step` parameter names a kiu step."""

    def __init__(self, config: Any, directory: Path) -> None:
        super().__init__(config)
        self._step = load_step(repository.config_json(config), directory)

    async def infer(self, inputs: Tensors) -> Tensors:
        return await asyncio.to_thread(self._step, inputs)


class EnsembleModel(Model):
    """Steps wired by tensor names, run in dependency order."""

    def __init__(self, config: Any, steps: list[tuple[Model, dict[str, str], dict[str, str]]]):
        super().__init__(config)
        available = {spec.name for spec in self.inputs}
        ordered: list[tuple[Model, dict[str, str], dict[str, str]]] = []
        pending = list(steps)
        while pending:
            ready = [s for s in pending if set(s[1].values()) <= available]
            if not ready:
                names = [s[0].name for s in pending]
                raise repository.RepositoryError(f"{self.name}: steps {names} never get inputs")
            for step in ready:
                pending.remove(step)
                ordered.append(step)
                available |= set(step[2].values())
        missing = {spec.name for spec in self.outputs} - available
        if missing:
            raise repository.RepositoryError(f"{self.name}: no step produces {sorted(missing)}")
        self._steps = ordered

    async def infer(self, inputs: Tensors) -> Tensors:
        tensors = dict(inputs)
        for model, input_map, output_map in self._steps:
            outputs = await model.infer({key: tensors[name] for key, name in input_map.items()})
            for key, name in output_map.items():
                tensors[name] = outputs[key]
        return {spec.name: tensors[spec.name] for spec in self.outputs}


def load_model(root: Path, name: str, *, version: int = -1) -> Model:
    """Load model `name` of the repository at `root`, with everything it runs."""
    config = repository.read_config(root, name)
    if config.platform == "ensemble":
        steps = [
            (
                load_model(root, step.model_name, version=step.model_version),
                dict(step.input_map),
                dict(step.output_map),
            )
            for step in config.ensemble_scheduling.step
        ]
        return EnsembleModel(config, steps)
    directory = repository.version_directory(root, config, version=version)
    if config.backend == "onnxruntime" or config.platform == "onnxruntime_onnx":
        return OnnxModel(config, directory)
    if config.backend == "python":
        return PythonModel(config, directory)
    raise repository.RepositoryError(
        f"model {name!r}: the cpu runtime runs ensembles, ONNX models and kiu Python steps, "
        f"not platform {config.platform!r} / backend {config.backend!r}"
    )
