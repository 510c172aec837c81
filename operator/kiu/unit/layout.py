"""The files of a Triton-layout repository that serves one model through its contract.

`kiu model import` writes them; both runtimes serve the result. The model
`NAME` is an ensemble of three steps, the same shape as the bundled models::

    NAME/config.pbtxt                       ensemble, kiu.task
    NAME-preprocess/1/{model.py,contract.json}
    NAME-onnx/1/model.onnx                  the model as exported, dynamic batching
    NAME-postprocess/1/{model.py,contract.json,labels.txt,thresholds.json}

Pure: the caller supplies the model's tensor signature and writes the texts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kiu.contract import ORIGINAL_SIZE, Classification, Contract

#: Triton's config names of the element types kiu meets in image models.
TRITON_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}
#: A config tensor: name, Triton type, dims without the batch dimension.
Spec = tuple[str, str, tuple[int, ...]]
#: How long the ONNX step waits to fill a batch.
BATCH_DELAY_MICROSECONDS = 2000

MODEL_PY = (
    '"""Triton Python-backend entry point; the step it runs is named by this model\'s '
    'kiu.step."""\n\nfrom kiu.unit.pythonbackend import TritonPythonModel\n\n'
    '__all__ = ["TritonPythonModel"]\n'
)


@dataclass(frozen=True)
class Tensor:
    """A model input or output: name, numpy element type name, dims without the batch (-1: any)."""

    name: str
    dtype: str
    dims: tuple[int, ...]


def files(
    name: str,
    *,
    contract: Contract,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    labels: Sequence[str],
    thresholds: Mapping[str, float],
    max_batch_size: int,
) -> dict[str, str]:
    """Path inside the repository -> text, for everything but the model file itself
    (`onnx_path(name)`)."""
    detection = not isinstance(contract.output, Classification)
    used = set(
        (contract.output.tensor,)
        if isinstance(contract.output, Classification)
        else contract.output.tensors
    )
    read = [tensor for tensor in outputs if tensor.name in used]
    image = next(tensor for tensor in inputs if tensor.name == contract.input.name)
    results: list[Spec] = [
        ("LABELS", "TYPE_STRING", (-1,)),
        ("CONFIDENCES", "TYPE_FP32", (-1,)),
        ("THRESHOLDS", "TYPE_FP32", (-1,)),
    ]
    if detection:
        results.append(("BOXES", "TYPE_FP32", (-1, 4)))
    pixels = (contract.input.name, TRITON_TYPES[contract.input.dtype], contract.input.dims())
    size = (ORIGINAL_SIZE, "TYPE_INT32", (2,))
    preprocess = f"{name}-preprocess"
    model = f"{name}-onnx"
    postprocess = f"{name}-postprocess"
    contract_text = contract.dump()
    return {
        f"{name}/config.pbtxt": _ensemble(
            name, contract=contract, read=read, results=results, max_batch_size=max_batch_size
        ),
        f"{name}/1/.keep": "",
        f"{preprocess}/config.pbtxt": _python(
            preprocess,
            "preprocess",
            inputs=[("IMAGE", "TYPE_STRING", (1,))],
            outputs=[pixels, size],
            max_batch_size=max_batch_size,
            comment="Decodes and resizes each image as contract.json declares.",
        ),
        f"{preprocess}/1/model.py": MODEL_PY,
        f"{preprocess}/1/contract.json": contract_text,
        f"{model}/config.pbtxt": _onnx(
            model, image=image, outputs=outputs, max_batch_size=max_batch_size
        ),
        f"{postprocess}/config.pbtxt": _python(
            postprocess,
            "postprocess",
            inputs=[_triton(t) for t in read] + ([size] if detection else []),
            outputs=results,
            max_batch_size=max_batch_size,
            comment="Turns the model's outputs into labels (and boxes) as contract.json declares.",
        ),
        f"{postprocess}/1/model.py": MODEL_PY,
        f"{postprocess}/1/contract.json": contract_text,
        f"{postprocess}/1/labels.txt": "".join(f"{label}\n" for label in labels),
        f"{postprocess}/1/thresholds.json": json.dumps(dict(thresholds), indent=2) + "\n",
    }


def onnx_path(name: str) -> str:
    """Where the model file goes inside the repository."""
    return f"{name}-onnx/1/model.onnx"


def _triton(tensor: Tensor) -> Spec:
    return (tensor.name, TRITON_TYPES[tensor.dtype], tensor.dims)


def _tensors(key: str, specs: Sequence[Spec]) -> str:
    entries = []
    for tensor_name, data_type, dims in specs:
        shape = ", ".join(str(d) for d in dims) if dims else "1"
        reshape = "\n    reshape { shape: [ ] }" if not dims else ""
        entries.append(
            f"  {{\n    name: {json.dumps(tensor_name)}\n    data_type: {data_type}\n"
            f"    dims: [ {shape} ]{reshape}\n  }}"
        )
    return f"{key} [\n" + ",\n".join(entries) + "\n]\n"


def _header(name: str, comment: str, max_batch_size: int) -> str:
    return f"# {comment}\nname: {json.dumps(name)}\nmax_batch_size: {max_batch_size}\n"


def _python(
    name: str,
    step: str,
    *,
    inputs: Sequence[Spec],
    outputs: Sequence[Spec],
    max_batch_size: int,
    comment: str,
) -> str:
    return (
        _header(name, comment, max_batch_size)
        + 'backend: "python"\n'
        + _tensors("input", inputs)
        + _tensors("output", outputs)
        + "instance_group [ { kind: KIND_CPU } ]\n"
        + f'parameters {{\n  key: "kiu.step"\n  value {{ string_value: "{step}" }}\n}}\n'
    )


def _onnx(name: str, *, image: Tensor, outputs: Sequence[Tensor], max_batch_size: int) -> str:
    return (
        _header(name, "The model as exported, on the onnxruntime backend.", max_batch_size)
        + 'backend: "onnxruntime"\n'
        + _tensors("input", [_triton(image)])
        + _tensors("output", [_triton(t) for t in outputs])
        + "dynamic_batching {\n"
        + f"  max_queue_delay_microseconds: {BATCH_DELAY_MICROSECONDS}\n}}\n"
    )


def _maps(pairs: Sequence[tuple[str, str]], key: str) -> str:
    entries = ",\n".join(
        f"        {{ key: {json.dumps(k)} value: {json.dumps(v)} }}" for k, v in pairs
    )
    return f"      {key} [\n{entries}\n      ]\n"


def _ensemble(
    name: str,
    *,
    contract: Contract,
    read: Sequence[Tensor],
    results: Sequence[Spec],
    max_batch_size: int,
) -> str:
    detection = contract.task == "object_detection"
    wire = {tensor.name: f"model_{index}" for index, tensor in enumerate(read)}
    pre_out = [(contract.input.name, "pixels")]
    post_in = list(wire.items())
    if detection:
        pre_out.append((ORIGINAL_SIZE, "original_size"))
        post_in.append((ORIGINAL_SIZE, "original_size"))
    steps = [
        (f"{name}-preprocess", [("IMAGE", "IMAGE")], pre_out),
        (f"{name}-onnx", [(contract.input.name, "pixels")], list(wire.items())),
        (f"{name}-postprocess", post_in, [(result[0], result[0]) for result in results]),
    ]
    body = ",\n".join(
        "    {\n"
        f"      model_name: {json.dumps(step)}\n      model_version: -1\n"
        + _maps(inputs, "input_map")
        + _maps(outputs, "output_map")
        + "    }"
        for step, inputs, outputs in steps
    )
    return (
        _header(
            name,
            "Your model, served by kiu: image -> preprocess -> model -> postprocess.",
            max_batch_size,
        )
        + 'platform: "ensemble"\n'
        + _tensors("input", [("IMAGE", "TYPE_STRING", (1,))])
        + _tensors("output", results)
        + "ensemble_scheduling {\n  step [\n"
        + body
        + "\n  ]\n}\n"
        + f'parameters {{\n  key: "kiu.task"\n  value {{ string_value: "{contract.task}" }}\n}}\n'
    )
