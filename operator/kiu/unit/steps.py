"""The Python steps of kiu's ensembles, built from a step model's config.

Triton runs them in its Python backend (`kiu.unit.pythonbackend`) and the cpu
runtime calls them directly; both build them here from the same config and
files, so the two runtimes run the same code on the same data. Which step a
model is comes from its `kiu.step` config parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kiu.imaging import postprocessing, preprocessing

STEP_PARAMETER = "kiu.step"
LABELS_FILE = "labels.txt"
THRESHOLDS_FILE = "thresholds.json"

Tensors = dict[str, np.ndarray]
Step = Callable[[Mapping[str, np.ndarray]], Tensors]


@dataclass(frozen=True)
class Preprocess:
    """Encoded images (N, 1) BYTES -> pixels (N, 3, H, W) at the size the config's output names."""

    source: str
    target: str
    width: int
    height: int

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        images = np.asarray(inputs[self.source], dtype=np.object_).reshape(-1)
        pixels = preprocessing.preprocess(images, width=self.width, height=self.height)
        return {self.target: pixels}


@dataclass(frozen=True)
class ClassificationPostprocess:
    """PROBABILITIES (N, C) -> LABELS, CONFIDENCES, THRESHOLDS."""

    labels: postprocessing.LabelSet

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        return postprocessing.classify(inputs["PROBABILITIES"], labels=self.labels)


@dataclass(frozen=True)
class DetectionPostprocess:
    """SCORES (N, A, C) and CANDIDATES (N, A, 4) -> LABELS, CONFIDENCES, THRESHOLDS, BOXES."""

    labels: postprocessing.LabelSet

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        return postprocessing.detect(inputs["SCORES"], inputs["CANDIDATES"], labels=self.labels)


def load_step(config: Mapping[str, Any], directory: Path) -> Step:
    """The step a model config asks for.

    `config` is the config in Triton's JSON form (what the Python backend gets
    as args["model_config"]); `directory` is the model's version directory,
    which holds the label files of postprocess steps.
    """
    parameters = config.get("parameters", {})
    kind = parameters.get(STEP_PARAMETER, {}).get("string_value")
    if kind == "preprocess":
        (source,) = config["input"]
        (target,) = config["output"]
        channels, height, width = (int(d) for d in target["dims"])
        if channels != 3:
            raise ValueError(f"{config['name']}: preprocess output must be (3, H, W)")
        return Preprocess(source["name"], target["name"], width=width, height=height)
    if kind in ("classification-postprocess", "detection-postprocess"):
        labels = postprocessing.LabelSet.parse(
            labels=(directory / LABELS_FILE).read_text(),
            thresholds=(directory / THRESHOLDS_FILE).read_text(),
        )
        if kind == "classification-postprocess":
            return ClassificationPostprocess(labels)
        return DetectionPostprocess(labels)
    raise ValueError(f"{config.get('name')}: unknown {STEP_PARAMETER} parameter {kind!r}")
