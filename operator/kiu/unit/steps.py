"""The Python steps of kiu's ensembles, built from a step model's config and the model contract.

Triton runs them in its Python backend (`kiu.unit.pythonbackend`) and the cpu
runtime calls them directly; both build them here from the same config and
files, so the two runtimes run the same code on the same data. Which step a
model is comes from its `kiu.step` config parameter (`preprocess` or
`postprocess`); what it does comes from `contract.json` in its version
directory (`kiu.contract`), with the postprocess step's `labels.txt` (unless
the contract lists the labels) and `thresholds.json`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kiu.contract import FILE as CONTRACT_FILE
from kiu.contract import ORIGINAL_SIZE, Classification, Contract, ContractError, Detection
from kiu.imaging import postprocessing, preprocessing

STEP_PARAMETER = "kiu.step"
LABELS_FILE = "labels.txt"
THRESHOLDS_FILE = "thresholds.json"

Tensors = dict[str, np.ndarray]
Step = Callable[[Mapping[str, np.ndarray]], Tensors]


@dataclass(frozen=True)
class Preprocess:
    """Encoded images (N, 1) BYTES -> the model's input tensor and ORIGINAL_SIZE (N, 2)."""

    source: str
    contract: Contract

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        images = np.asarray(inputs[self.source], dtype=np.object_).reshape(-1)
        pixels, sizes = preprocessing.preprocess(images, self.contract)
        return {self.contract.input.name: pixels, ORIGINAL_SIZE: sizes}


@dataclass(frozen=True)
class ClassificationPostprocess:
    """Class scores -> LABELS, CONFIDENCES, THRESHOLDS."""

    output: Classification
    labels: postprocessing.LabelSet

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        return postprocessing.classify(
            inputs[self.output.tensor],
            labels=self.labels,
            activation=self.output.activation,
            top_k=self.output.top_k,
        )


@dataclass(frozen=True)
class DetectionPostprocess:
    """Detector outputs and ORIGINAL_SIZE -> LABELS, CONFIDENCES, THRESHOLDS, BOXES."""

    contract: Contract
    output: Detection
    labels: postprocessing.LabelSet

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        model_input = self.contract.input
        items = postprocessing.candidates(
            inputs,
            self.output,
            input_size=(model_input.width, model_input.height),
            classes=len(self.labels.names),
        )
        sizes = np.asarray(inputs[ORIGINAL_SIZE]).reshape(-1, 2)
        placements = [self.contract.placement((int(w), int(h))) for w, h in sizes]
        return postprocessing.detect(
            items,
            placements,
            labels=self.labels,
            suppress=self.output.suppresses,
            iou=self.output.iou,
            top_k=self.output.top_k,
        )


def read_contract(directory: Path) -> Contract:
    """The contract in a step's version directory; ContractError says what is missing or wrong."""
    path = directory / CONTRACT_FILE
    if not path.is_file():
        raise ContractError(f"missing {path}: every kiu step declares its model's contract")
    try:
        return Contract.parse(path.read_text())
    except ContractError as error:
        raise ContractError(f"{path}: {error}") from error


def read_labels(directory: Path, contract: Contract) -> postprocessing.LabelSet:
    """The contract's inline labels or `labels.txt`, with `thresholds.json`."""
    labels_path = directory / LABELS_FILE
    thresholds_path = directory / THRESHOLDS_FILE
    if contract.labels is not None:
        labels = "\n".join(contract.labels)
    elif labels_path.is_file():
        labels = labels_path.read_text()
    else:
        raise ContractError(f"missing {labels_path}: the contract lists no labels")
    if not thresholds_path.is_file():
        raise ContractError(f"missing {thresholds_path}: each label needs a default threshold")
    try:
        return postprocessing.LabelSet.parse(labels=labels, thresholds=thresholds_path.read_text())
    except ValueError as error:
        raise ContractError(f"{thresholds_path}: {error}") from error


def load_step(config: Mapping[str, Any], directory: Path) -> Step:
    """The step a model config asks for.

    `config` is the config in Triton's JSON form (what the Python backend gets
    as args["model_config"]); `directory` is the model's version directory.
    The config's tensors must agree with the contract, so a mismatch fails at
    load with a message instead of at the first request.
    """
    name = config.get("name")
    parameters = config.get("parameters", {})
    kind = parameters.get(STEP_PARAMETER, {}).get("string_value")
    if kind not in ("preprocess", "postprocess"):
        raise ValueError(f"{name}: unknown {STEP_PARAMETER} parameter {kind!r}")
    contract = read_contract(directory)
    if kind == "preprocess":
        (source,) = config["input"]
        outputs = {tensor["name"]: tensor for tensor in config["output"]}
        target = outputs.get(contract.input.name)
        if target is None:
            raise ContractError(
                f"{name}: no output named {contract.input.name!r}, the contract's input.name"
            )
        dims = tuple(int(d) for d in target["dims"])
        if dims != contract.input.dims():
            raise ContractError(
                f"{name}: output {contract.input.name!r} has dims {list(dims)}; the contract "
                f"({contract.input.layout}, {contract.input.channels} channels, "
                f"{contract.input.width}x{contract.input.height}) gives "
                f"{list(contract.input.dims())}"
            )
        return Preprocess(source["name"], contract)
    labels = read_labels(directory, contract)
    inputs = {tensor["name"] for tensor in config["input"]}
    if isinstance(contract.output, Classification):
        needed = {contract.output.tensor}
        step: Step = ClassificationPostprocess(contract.output, labels)
    else:
        needed = {*contract.output.tensors, ORIGINAL_SIZE}
        step = DetectionPostprocess(contract, contract.output, labels)
    if not needed <= inputs:
        raise ContractError(f"{name}: the contract reads inputs {sorted(needed - inputs)}")
    return step
