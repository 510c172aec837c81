"""The Triton Python-backend adapter, driven the way Triton drives it.

Triton cannot run here, so `triton_python_backend_utils` is replaced by a
stand-in with the few names the adapter uses; what is under test is that the
adapter builds the step from Triton's arguments and turns a bad image into an
error response for that request alone.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from kiu.unit.repository import config_json, read_config

from .expected import REPOSITORY, images


@dataclass
class _Tensor:
    name: str
    array: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class _Request:
    tensors: dict[str, np.ndarray]


@dataclass
class _Response:
    output_tensors: list[_Tensor] = field(default_factory=list)
    error: Any = None


class _TritonError(Exception):
    INVALID_ARG = 3

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@pytest.fixture
def adapter(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    stand_in = types.ModuleType("triton_python_backend_utils")
    stand_in.Tensor = _Tensor  # type: ignore[attr-defined]
    stand_in.InferenceResponse = _Response  # type: ignore[attr-defined]
    stand_in.TritonError = _TritonError  # type: ignore[attr-defined]
    stand_in.get_input_tensor_by_name = lambda request, name: _Tensor(  # type: ignore[attr-defined]
        name, request.tensors[name]
    )
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stand_in)
    monkeypatch.delitem(sys.modules, "kiu.unit.pythonbackend", raising=False)
    return importlib.import_module("kiu.unit.pythonbackend")


def _model(adapter: types.ModuleType, name: str) -> Any:
    model = adapter.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config_json(read_config(REPOSITORY, name))),
            "model_repository": str(REPOSITORY / name),
            "model_version": "1",
        }
    )
    return model


def test_preprocess_step_answers_each_request_and_fails_only_the_bad_one(
    adapter: types.ModuleType,
) -> None:
    model = _model(adapter, "shapes-detector-preprocess")
    good = np.array([[images("shapes-detector")[0]]] * 2, dtype=np.object_)
    bad = np.array([[b"not an image"]], dtype=np.object_)
    ok, failed = model.execute([_Request({"IMAGE": good}), _Request({"IMAGE": bad})])
    pixels, sizes = ok.output_tensors
    assert pixels.name == "PIXELS"
    assert pixels.array.shape == (2, 3, 96, 96)
    assert sizes.name == "ORIGINAL_SIZE"
    assert sizes.array.shape == (2, 2)
    assert failed.error.code == _TritonError.INVALID_ARG
    assert "not a PNG or JPEG image" in str(failed.error)


def test_postprocess_step_names_labels_from_the_version_directory(
    adapter: types.ModuleType,
) -> None:
    model = _model(adapter, "shapes-classifier-postprocess")
    probabilities = np.array([[0.1, 0.7, 0.15, 0.05]], dtype=np.float32)
    (response,) = model.execute([_Request({"PROBABILITIES": probabilities})])
    outputs = {t.name: t.array for t in response.output_tensors}
    assert list(outputs) == ["LABELS", "CONFIDENCES", "THRESHOLDS"]
    assert outputs["LABELS"][0].tolist() == [b"square", b"triangle", b"circle", b"star"]
