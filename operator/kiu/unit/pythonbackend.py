"""The model class Triton's Python backend loads for kiu's Python steps.

Each step's `model.py` re-exports `TritonPythonModel` from here, so the
repository holds no logic of its own: the step is built by
`kiu.unit.steps.load_step` from the model's config, exactly as the cpu runtime
builds it. `triton_python_backend_utils` exists only inside Triton's Python
backend, so this module is imported there and nowhere else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import triton_python_backend_utils as pb_utils

from kiu.imaging.preprocessing import InvalidImageError
from kiu.unit.steps import load_step


class TritonPythonModel:
    """Runs one kiu step per request; a bad image fails only its own request."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        directory = Path(args["model_repository"]) / args["model_version"]
        self._step = load_step(config, directory)
        self._inputs = [tensor["name"] for tensor in config["input"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            inputs = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self._inputs
            }
            try:
                outputs = self._step(inputs)
            except InvalidImageError as error:
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
                    )
                )
                continue
            tensors = [pb_utils.Tensor(name, array) for name, array in outputs.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
