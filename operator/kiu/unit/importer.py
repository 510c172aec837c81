"""`kiu model import`: turn a trained ONNX model into a repository both runtimes serve.

It reads the model's input and output signature with onnxruntime, fills a
contract (`kiu.contract`) from a preset (imagenet, yolo, raw) and the flags
that override it, refuses models it cannot map with a message naming the fix,
writes the repository (`kiu.unit.layout`) and validates it by serving one
synthetic image through the written repository exactly as `kiu unit` would.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from kiu.contract import (
    ACTIVATIONS,
    BOX_ENCODINGS,
    COLOURS,
    DETECTION_FORMATS,
    INTERPOLATIONS,
    LAYOUTS,
    RESIZE_MODES,
    UNITS,
    Contract,
    ContractError,
)
from kiu.imaging import scenes
from kiu.unit import layout

#: The ONNX metadata keys a class list is read from, in this order: `names` is what
#: Ultralytics exports (a Python dict literal {0: 'person', ...}); the others hold a JSON
#: list or one name per line or comma.
METADATA_KEYS = ("names", "labels", "classes")
PRESETS = ("imagenet", "yolo", "raw")
TASKS = {"classification": "classification", "object-detection": "object_detection"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


class ImportRefusedError(Exception):
    """The model cannot be mapped as asked; the message says what to change."""


@dataclass(frozen=True)
class Signature:
    """An ONNX model's tensors as onnxruntime reports them (None: a dynamic dimension)."""

    inputs: tuple[tuple[str, str, tuple[int | None, ...]], ...]
    outputs: tuple[tuple[str, str, tuple[int | None, ...]], ...]
    metadata: dict[str, str]

    @classmethod
    def read(cls, path: Path) -> Signature:
        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:
            raise ImportRefusedError(f"onnxruntime cannot load {path}: {error}") from error

        def tensors(args: Sequence[Any]) -> tuple[tuple[str, str, tuple[int | None, ...]], ...]:
            return tuple(
                (
                    arg.name,
                    _ORT_TYPES.get(arg.type, arg.type),
                    tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape),
                )
                for arg in args
            )

        meta = session.get_modelmeta().custom_metadata_map
        return cls(tensors(session.get_inputs()), tensors(session.get_outputs()), dict(meta))

    def describe(self) -> str:
        def line(kind: str, tensor: tuple[str, str, tuple[int | None, ...]]) -> str:
            shape = ", ".join("?" if d is None else str(d) for d in tensor[2])
            return f"  {kind} {tensor[0]}: {tensor[1]} [{shape}]"

        return "\n".join(
            [line("input ", t) for t in self.inputs] + [line("output", t) for t in self.outputs]
        )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kiu model import",
        description="Write a Triton-layout repository that serves your ONNX image model on "
        "both runtimes, its preprocessing and output format declared in contract.json.",
    )
    p.add_argument("model", type=Path, help="the .onnx file")
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument(
        "--preset",
        required=True,
        choices=PRESETS,
        help="imagenet: shorter side + centre crop, ImageNet mean/std, softmax; "
        "yolo: letterbox 114, /255, raw YOLO head; raw: stretch, pixels 0..255",
    )
    p.add_argument("--out", required=True, type=Path, help="REPOSITORY/NAME to write")
    p.add_argument("--labels", type=Path, help="one class name per line, in output order")
    p.add_argument(
        "--labels-key",
        help=f"ONNX metadata key holding the classes "
        f"(default: the first of {', '.join(METADATA_KEYS)} present)",
    )
    p.add_argument(
        "--inline-labels",
        action="store_true",
        help="write the labels into contract.json instead of labels.txt",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=50.0,
        help="every label's default minimum confidence, percent (default: 50)",
    )
    p.add_argument("--input", help="the image input tensor (default: the only input)")
    p.add_argument("--layout", choices=LAYOUTS)
    p.add_argument("--size", help="WIDTHxHEIGHT to feed (needed when the model's is dynamic)")
    p.add_argument("--resize", choices=RESIZE_MODES)
    p.add_argument("--resize-size", type=int, help="shorter-side: the side before the crop")
    p.add_argument("--pad", type=int, help="letterbox border grey level")
    p.add_argument("--interpolation", choices=INTERPOLATIONS)
    p.add_argument("--colour", "--color", choices=COLOURS)
    p.add_argument("--scale", type=float)
    p.add_argument("--mean", help="per-channel means after scaling, comma-separated")
    p.add_argument("--std", help="per-channel standard deviations, comma-separated")
    p.add_argument("--activation", choices=ACTIVATIONS)
    p.add_argument("--top-k", type=int)
    p.add_argument("--format", choices=DETECTION_FORMATS, help="detection output format")
    p.add_argument("--output", help="the classification or YOLO output tensor")
    p.add_argument("--boxes", help="anchors/boxes formats: the boxes tensor")
    p.add_argument("--scores", help="anchors/boxes formats: the scores tensor")
    p.add_argument("--classes", help="boxes format: the class index tensor")
    p.add_argument("--count", help="boxes format: the tensor counting valid rows")
    p.add_argument("--box", choices=BOX_ENCODINGS)
    p.add_argument("--units", choices=UNITS)
    p.add_argument("--iou", type=float)
    return p


def _floats(text: str | None) -> list[float] | None:
    return None if text is None else [float(v) for v in text.split(",")]


def labels_from_metadata(metadata: dict[str, str], key: str | None) -> list[str] | None:
    """The class list an exporter stored in the model's metadata, if any."""
    keys = (key,) if key else METADATA_KEYS
    for name in keys:
        if name not in metadata:
            continue
        text = metadata[name].strip()
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = [v.strip() for v in text.replace(",", "\n").splitlines() if v.strip()]
        if isinstance(value, dict):
            value = [value[k] for k in sorted(value)]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ImportRefusedError(
            f"ONNX metadata {name!r} is not a list of class names: {text[:80]}"
        )
    if key:
        raise ImportRefusedError(
            f"the model has no metadata key {key!r}; it has {sorted(metadata)}"
        )
    return None


def build_contract(
    args: argparse.Namespace, signature: Signature, labels: Sequence[str] | None
) -> tuple[Contract, int]:
    """The contract for this model and these flags, and the ensemble's max batch size."""
    task = TASKS[args.task]
    candidates = [t for t in signature.inputs if args.input in (None, t[0])]
    if len(candidates) != 1:
        names = [t[0] for t in signature.inputs]
        raise ImportRefusedError(f"the model takes inputs {names}: name the image one with --input")
    name, dtype, shape = candidates[0]
    if len(shape) != 4:
        raise ImportRefusedError(
            f"input {name!r} has rank {len(shape)}; kiu feeds images [N, C, H, W] or "
            "[N, H, W, C]: export the model with a 4-D image input"
        )
    layout_ = args.layout or ("NHWC" if shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW")
    channels, height, width = (
        (shape[1], shape[2], shape[3]) if layout_ == "NCHW" else (shape[3], shape[1], shape[2])
    )
    if channels not in (1, 3):
        raise ImportRefusedError(
            f"input {name!r} {list(shape)} has {channels} channels in {layout_}; kiu feeds 1 "
            "(grey) or 3 (colour) channels: check --layout or export an image model"
        )
    if dtype not in ("float32", "float16", "uint8"):
        raise ImportRefusedError(f"input {name!r} is {dtype}; kiu feeds float32, float16 or uint8")
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
    if width is None or height is None:
        raise ImportRefusedError(f"input {name!r} has a dynamic size: pass --size WIDTHxHEIGHT")
    batch = shape[0]
    if batch not in (None, 1):
        raise ImportRefusedError(
            f"input {name!r} has a fixed batch of {batch}: export it with "
            "a dynamic batch dimension (or batch 1)"
        )
    max_batch_size = 8 if batch is None else 1
    document: dict[str, Any] = {
        "task": task,
        "input": {
            "name": name,
            "layout": layout_,
            "dtype": dtype,
            "channels": channels,
            "width": width,
            "height": height,
        },
    }
    uint8 = dtype == "uint8"
    if args.preset == "imagenet":
        document["resize"] = {"mode": "shorter-side", "size": round(min(width, height) * 256 / 224)}
        if not uint8:
            document.update(scale=1 / 255, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    elif args.preset == "yolo":
        document["resize"] = {"mode": "letterbox", "pad": 114}
        if not uint8:
            document["scale"] = 1 / 255
    else:
        document["resize"] = {"mode": "stretch"}
    resize = document["resize"]
    for flag, key in (
        ("resize", "mode"),
        ("resize_size", "size"),
        ("pad", "pad"),
        ("interpolation", "interpolation"),
    ):
        if getattr(args, flag) is not None:
            resize[key] = getattr(args, flag)
    if resize["mode"] != "shorter-side":
        resize.pop("size", None)
    for flag in ("colour", "scale"):
        if getattr(args, flag) is not None:
            document[flag] = getattr(args, flag)
    for flag in ("mean", "std"):
        if getattr(args, flag) is not None:
            document[flag] = _floats(getattr(args, flag))
    document["output"] = (
        _classification(args, signature, labels)
        if task == "classification"
        else _detection(args, signature, labels)
    )
    if args.inline_labels and labels is not None:
        document["labels"] = list(labels)
    try:
        return Contract.from_dict(document), max_batch_size
    except ContractError as error:
        raise ImportRefusedError(f"the contract would be invalid: {error}") from error


def _output(
    signature: Signature, name: str | None, what: str
) -> tuple[str, str, tuple[int | None, ...]]:
    found = [t for t in signature.outputs if name in (None, t[0])]
    if len(found) != 1:
        names = [t[0] for t in signature.outputs]
        raise ImportRefusedError(
            f"the model has outputs {names}: name the {what} one with --output"
        )
    return found[0]


def _count_mismatch(classes: int | None, labels: Sequence[str] | None, where: str) -> None:
    if classes is not None and labels is not None and classes != len(labels):
        raise ImportRefusedError(
            f"{where} gives {classes} classes but there are {len(labels)} labels: pass --labels "
            "with one name per class, in output order"
        )


def _classification(
    args: argparse.Namespace, signature: Signature, labels: Sequence[str] | None
) -> dict[str, Any]:
    name, _, shape = _output(signature, args.output, "class scores")
    if len(shape) != 2:
        raise ImportRefusedError(
            f"output {name!r} has shape {list(shape)}; a classifier gives [N, classes]: "
            "use --task object-detection for a detector, or export the scores flattened"
        )
    _count_mismatch(shape[1], labels, f"output {name!r}")
    activation = args.activation or ("softmax" if args.preset == "imagenet" else "none")
    output: dict[str, Any] = {"tensor": name, "activation": activation}
    if args.top_k is not None:
        output["top_k"] = args.top_k
    return output


def _detection(
    args: argparse.Namespace, signature: Signature, labels: Sequence[str] | None
) -> dict[str, Any]:
    classes = len(labels) if labels is not None else None
    fmt = args.format
    if fmt is None and args.preset != "yolo" and not args.boxes:
        raise ImportRefusedError(
            "name the detection output format with --format "
            f"({', '.join(DETECTION_FORMATS)}) or use --preset yolo"
        )
    output: dict[str, Any] = {}
    if fmt in (None, "yolov8", "yolov5"):
        name, _, shape = _output(signature, args.output, "YOLO head")
        if len(shape) != 3:
            raise ImportRefusedError(
                f"output {name!r} has shape {list(shape)}; a raw YOLO head is "
                "[N, 4+C, anchors] or [N, anchors, 5+C]"
            )
        if fmt is None:
            if classes is not None and shape[1] == 4 + classes:
                fmt = "yolov8"
            elif classes is not None and shape[2] == 5 + classes:
                fmt = "yolov5"
            else:
                raise ImportRefusedError(
                    f"output {name!r} {list(shape)} fits neither [N, 4+C, A] nor [N, A, 5+C] "
                    f"with C = {classes} labels: check --labels or pass --format"
                )
        _count_mismatch(
            (shape[1] - 4 if shape[1] else None)
            if fmt == "yolov8"
            else (shape[2] - 5 if shape[2] else None),
            labels,
            f"output {name!r}",
        )
        output.update(format=fmt, tensor=name)
    else:
        output["format"] = fmt
        for key in ("boxes", "scores", "classes", "count"):
            value = getattr(args, key)
            if value is not None:
                output[key] = value
        names = {t[0]: t for t in signature.outputs}
        for key, tensor in output.items():
            if key != "format" and tensor not in names:
                raise ImportRefusedError(
                    f"--{key} {tensor!r} is not an output; outputs: {sorted(names)}"
                )
        if fmt == "anchors" and "scores" in output:
            _count_mismatch(names[output["scores"]][2][-1], labels, f"output {output['scores']!r}")
    for key in ("box", "units", "iou", "top_k"):
        if getattr(args, key) is not None:
            output[key] = getattr(args, key)
    return output


def _validate(root: Path, name: str) -> dict[str, np.ndarray]:
    """Serve one synthetic photo-sized image through the written repository, as a unit does."""
    from kiu.unit import models

    model = models.load_model(root, name)
    image = next(scenes.scenes("detection", seed=1, count=1)).image

    async def once() -> dict[str, np.ndarray]:
        return await model.infer({"IMAGE": np.array([[image]], dtype=np.object_)})

    return asyncio.run(once())


def import_model(args: argparse.Namespace) -> tuple[Signature, Contract, dict[str, np.ndarray]]:
    """Check, write and validate; the repository appears only when all of it passed."""
    if not args.model.is_file():
        raise ImportRefusedError(f"no model file {args.model}")
    signature = Signature.read(args.model)
    labels: list[str] | None
    if args.labels is not None:
        labels = [line.strip() for line in args.labels.read_text().splitlines() if line.strip()]
    else:
        labels = labels_from_metadata(signature.metadata, args.labels_key)
    if labels is None:
        raise ImportRefusedError(
            "no class names: pass --labels FILE (one per line) or export them in the model's "
            f"metadata under one of {', '.join(METADATA_KEYS)}"
        )
    contract, max_batch_size = build_contract(args, signature, labels)
    root, name = args.out.parent, args.out.name
    inputs = [layout.Tensor(n, t, tuple(d or -1 for d in s[1:])) for n, t, s in signature.inputs]
    outputs = [layout.Tensor(n, t, tuple(d or -1 for d in s[1:])) for n, t, s in signature.outputs]
    for tensor in (*inputs, *outputs):
        if tensor.dtype not in layout.TRITON_TYPES:
            raise ImportRefusedError(
                f"tensor {tensor.name!r} has type {tensor.dtype}, which kiu does not read"
            )
    texts = layout.files(
        name,
        contract=contract,
        inputs=inputs,
        outputs=outputs,
        labels=[] if contract.labels is not None else labels,
        thresholds=dict.fromkeys(labels, args.threshold),
        max_batch_size=max_batch_size,
    )
    if contract.labels is not None:
        del texts[f"{name}-postprocess/1/labels.txt"]
    root.mkdir(parents=True, exist_ok=True)
    written = {path.split("/")[0] for path in texts}
    clashes = sorted(d for d in written if (root / d).exists())
    if clashes:
        raise ImportRefusedError(
            f"{root} already has {clashes}: remove them or choose another --out"
        )
    with tempfile.TemporaryDirectory(dir=root, prefix=".kiu-import-") as staging:
        stage = Path(staging)
        for path, text in texts.items():
            (stage / path).parent.mkdir(parents=True, exist_ok=True)
            (stage / path).write_text(text)
        (stage / layout.onnx_path(name)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.model, stage / layout.onnx_path(name))
        try:
            result = _validate(stage, name)
        except Exception as error:
            raise ImportRefusedError(f"the written repository does not serve: {error}") from error
        for directory in sorted(written):
            (stage / directory).rename(root / directory)
    return signature, contract, result


def main(argv: list[str]) -> int:
    """`kiu model import ...`; exit 1 when the model is refused, 2 on a usage error."""
    if not argv or argv[0] != "import":
        asked = argv[:1] in (["-h"], ["--help"])
        print(
            "usage: kiu model import MODEL.onnx --task ... --preset ... --out REPO/NAME\n"
            "(kiu model import --help lists every option)",
            file=sys.stdout if asked else sys.stderr,
        )
        return 0 if asked else 2
    args = parser().parse_args(argv[1:])
    try:
        signature, contract, result = import_model(args)
    except (ImportRefusedError, OSError) as error:
        print(f"kiu model import: {error}", file=sys.stderr)
        return 1
    print(f"signature of {args.model}:\n{signature.describe()}")
    print(f"contract ({args.out.name}-*/1/contract.json):\n{contract.dump()}", end="")
    labels = [v.decode() for v in result["LABELS"][0] if v]
    print(f"validated on a synthetic image: {len(labels)} results above the 1% floor")
    print(
        f"wrote {args.out}: serve it with kiu unit --model-repository {args.out.parent} "
        f"--model {args.out.name}"
    )
    return 0
