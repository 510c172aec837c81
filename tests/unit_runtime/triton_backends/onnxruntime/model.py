"""A Python-based Triton backend named `onnxruntime`: runs a repository's ONNX step on the
onnxruntime Python package, for a Triton build that ships only the Python backend (the
`nvidia-pytriton` wheel). Triton loads it for every model whose config says
`backend: "onnxruntime"`, so kiu's repositories are used unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = Path(args["model_repository"]) / args["model_version"] / filename
        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._inputs = [tensor["name"] for tensor in config["input"]]
        self._outputs = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            feed = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self._inputs
            }
            results = self._session.run(self._outputs, feed)
            tensors = [pb_utils.Tensor(n, r) for n, r in zip(self._outputs, results, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
