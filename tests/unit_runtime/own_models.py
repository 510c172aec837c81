"""Users' own models for the tests: ONNX graphs built here with random weights, and an
independent reference of what kiu must answer for them.

The reference is written from the contract's documented meaning, without kiu's code:
PIL and numpy for the preprocessing, onnxruntime on the raw model, then its own
activation, decoding, box mapping and non-maximum suppression.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

OPSET = 17
FLOOR = 1.0  # percent: kiu returns nothing below it
_ELEMENT = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "uint8": TensorProto.UINT8,
}
_NUMPY = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}
_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass
class OwnModel:
    """One user model: how it is built, the `kiu model import` flags that map it, and the
    contract values the reference needs (written out here, not read from kiu)."""

    name: str
    task: str  # classification | object-detection
    labels: list[str]
    layout: str = "NCHW"
    dtype: str = "float32"
    channels: int = 3
    width: int = 64
    height: int = 64
    dynamic: bool = False
    resize: str = "stretch"
    resize_size: int | None = None
    pad: int = 114
    interpolation: str = "bilinear"
    colour: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    activation: str = "none"  # classification: what the reference applies
    softmax_inside: bool = False  # classification: the graph ends in softmax
    output_dtype: str = "float32"
    top_k: int | None = None
    head: str = ""  # detection: yolov8 | yolov5 | boxes
    box: str = "cxcywh"
    units: str = "pixels"
    count: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    seed: int = 0

    @property
    def classes(self) -> int:
        return len(self.labels)


def _tensor(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name)


def build(model: OwnModel, path: Path) -> None:
    """Write the model's ONNX graph: a convolutional backbone with random weights and the
    output head its format asks for."""
    rng = np.random.default_rng(model.seed)
    nodes: list[Any] = []
    inits: list[TensorProto] = []
    spatial: list[int | str] = ["H", "W"] if model.dynamic else [model.height, model.width]
    shape = (
        ["N", model.channels, *spatial]
        if model.layout == "NCHW"
        else ["N", *spatial, model.channels]
    )
    x = "image"
    if model.dtype != "float32":
        nodes.append(helper.make_node("Cast", [x], ["as_float"], to=TensorProto.FLOAT))
        x = "as_float"
    if model.layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    gain = 1 / 255 if model.dtype == "uint8" or model.scale == 1.0 else 1.0
    inits += [
        _tensor("w1", (rng.normal(0, 0.6, (8, model.channels, 3, 3)) * gain).astype(np.float32)),
        _tensor("b1", rng.normal(0, 0.2, 8).astype(np.float32)),
    ]
    nodes += [
        helper.make_node("Conv", [x, "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["c1"], ["f1"]),
    ]
    outputs: list[Any] = []
    if model.task == "classification":
        inits += [
            _tensor("w2", rng.normal(0, 2.5, (model.classes, 8)).astype(np.float32)),
            _tensor("b2", rng.normal(0, 0.5, model.classes).astype(np.float32)),
        ]
        nodes += [
            helper.make_node("GlobalAveragePool", ["f1"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w2", "b2"], ["scores"], transB=1),
        ]
        last = "scores"
        if model.softmax_inside:
            nodes.append(helper.make_node("Softmax", [last], ["probabilities"], axis=-1))
            last = "probabilities"
        if model.output_dtype == "float16":
            nodes.append(helper.make_node("Cast", [last], ["out16"], to=TensorProto.FLOAT16))
            last = "out16"
        nodes.append(helper.make_node("Identity", [last], ["class_scores"]))
        outputs.append(
            helper.make_tensor_value_info(
                "class_scores", _ELEMENT[model.output_dtype], ["N", model.classes]
            )
        )
    else:
        channels = 4 + model.classes + (1 if model.head == "yolov5" else 0)
        inits += [
            _tensor("w2", rng.normal(0, 0.35, (channels, 8, 3, 3)).astype(np.float32)),
            _tensor("b2", rng.normal(0, 0.3, channels).astype(np.float32)),
            _tensor("flat_shape", np.array([0, channels, -1], np.int64)),
        ]
        nodes += [
            helper.make_node("Conv", ["f1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
            helper.make_node("Reshape", ["c2", "flat_shape"], ["flat"]),
            helper.make_node("Sigmoid", ["flat"], ["unit"]),
        ]
        if model.head in ("yolov8", "yolov5"):
            _yolo_head(model, nodes, inits, outputs, channels)
        else:
            _boxes_head(model, nodes, inits, outputs)
    graph = helper.make_graph(
        nodes,
        model.name,
        [helper.make_tensor_value_info("image", _ELEMENT[model.dtype], shape)],
        outputs,
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 9
    for key, value in model.metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _yolo_head(
    model: OwnModel,
    nodes: list[Any],
    inits: list[TensorProto],
    outputs: list[Any],
    channels: int,
) -> None:
    """cx, cy anywhere in the input, w, h up to half of it, sigmoid scores: input pixels."""
    scale = np.ones((channels, 1), np.float32)
    scale[:4, 0] = (model.width, model.height, model.width / 2, model.height / 2)
    inits.append(_tensor("head_scale", scale))
    nodes.append(
        helper.make_node(
            "Mul", ["unit", "head_scale"], ["head" if model.head == "yolov8" else "v8"]
        )
    )
    if model.head == "yolov5":
        nodes.append(helper.make_node("Transpose", ["v8"], ["head"], perm=[0, 2, 1]))
    shape = ["N", channels, "A"] if model.head == "yolov8" else ["N", "A", channels]
    outputs.append(helper.make_tensor_value_info("head", TensorProto.FLOAT, shape))


def _boxes_head(
    model: OwnModel, nodes: list[Any], inits: list[TensorProto], outputs: list[Any]
) -> None:
    """The first 12 anchors as post-processed detections: boxes, scores, classes(, count)."""
    keep = 12
    inits += [
        _tensor("starts", np.array([0], np.int64)),
        _tensor("ends", np.array([keep], np.int64)),
        _tensor("axis2", np.array([2], np.int64)),
        _tensor("axis1", np.array([1], np.int64)),
        _tensor("s0", np.array([0], np.int64)),
        _tensor("s2", np.array([2], np.int64)),
        _tensor("s4", np.array([4], np.int64)),
        _tensor("big", np.array([1 << 30], np.int64)),
        _tensor("last", np.array([-1], np.int64)),
        _tensor("half", np.array(0.5, np.float32)),
    ]
    normalised = model.units == "normalised"
    size = (1.0, 1.0) if normalised else (float(model.width), float(model.height))
    inits += [
        _tensor("origin_scale", np.array([0.6 * size[0], 0.6 * size[1]], np.float32)),
        _tensor("extent_scale", np.array([0.4 * size[0], 0.4 * size[1]], np.float32)),
    ]
    nodes += [
        helper.make_node("Slice", ["unit", "starts", "ends", "axis2"], ["first"]),
        helper.make_node("Transpose", ["first"], ["rows"], perm=[0, 2, 1]),
        helper.make_node("Slice", ["rows", "s0", "s2", "last"], ["xy"]),
        helper.make_node("Slice", ["rows", "s2", "s4", "last"], ["wh"]),
        helper.make_node("Slice", ["rows", "s4", "big", "last"], ["cls"]),
        helper.make_node("Mul", ["xy", "origin_scale"], ["origin"]),
        helper.make_node("Mul", ["wh", "extent_scale"], ["extent"]),
    ]
    if model.box == "xyxy":
        nodes += [
            helper.make_node("Add", ["origin", "extent"], ["corner"]),
            helper.make_node("Concat", ["origin", "corner"], ["boxes"], axis=-1),
        ]
    else:
        nodes.append(helper.make_node("Concat", ["origin", "extent"], ["boxes"], axis=-1))
    nodes += [
        helper.make_node("ReduceMax", ["cls"], ["scores"], axes=[-1], keepdims=0),
        helper.make_node("ArgMax", ["cls"], ["classes"], axis=-1, keepdims=0),
    ]
    outputs += [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", keep, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", keep]),
        helper.make_tensor_value_info("classes", TensorProto.INT64, ["N", keep]),
    ]
    if model.count:
        nodes += [
            helper.make_node("Greater", ["scores", "half"], ["confident"]),
            helper.make_node("Cast", ["confident"], ["ones"], to=TensorProto.INT64),
            helper.make_node("ReduceSum", ["ones", "axis1"], ["count"], keepdims=0),
        ]
        outputs.append(helper.make_tensor_value_info("count", TensorProto.INT64, ["N"]))


def photo(width: int, height: int, seed: int) -> bytes:
    """A smooth random colour image, PNG: structure at several scales, so resizing matters."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (max(2, height // 24), max(2, width // 24), 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(image, np.float64) + rng.normal(0, 18, (height, width, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _place(model: OwnModel, width: int, height: int) -> tuple[int, int, int, int]:
    """Resized width, height and the offset of its top-left corner in the input."""
    if model.resize == "stretch":
        return model.width, model.height, 0, 0
    if model.resize == "shorter-side":
        side = model.resize_size or min(model.width, model.height)
        rw, rh = (
            (side, int(side * height / width))
            if width <= height
            else (int(side * width / height), side)
        )
        return rw, rh, -((rw - model.width) // 2), -((rh - model.height) // 2)
    ratio = min(model.width / width, model.height / height)
    rw, rh = max(1, round(width * ratio)), max(1, round(height * ratio))
    return rw, rh, (model.width - rw) // 2, (model.height - rh) // 2


def reference_input(model: OwnModel, data: bytes) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The tensor (batch of one) the model must get, and the placement used."""
    image = Image.open(io.BytesIO(data)).convert("L" if model.channels == 1 else "RGB")
    rw, rh, ox, oy = _place(model, *image.size)
    resized = np.asarray(image.resize((rw, rh), _FILTERS[model.interpolation]), np.uint8)
    resized = resized.reshape(rh, rw, model.channels)
    canvas = np.full((model.height, model.width, model.channels), model.pad, np.uint8)
    # copy the overlap of the resized image placed at (ox, oy) and the canvas
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + rw, model.width), min(oy + rh, model.height)
    canvas[y0:y1, x0:x1] = resized[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    pixels = canvas[..., ::-1] if model.colour == "BGR" else canvas
    if model.dtype == "uint8":
        tensor = pixels
    else:
        values = (pixels.astype(np.float64) * model.scale - np.array(model.mean)) / np.array(
            model.std
        )
        tensor = values.astype(_NUMPY[model.dtype])
    if model.layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor[None]), (rw, rh, ox, oy)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def expected(model: OwnModel, onnx_path: Path, data: bytes) -> list[dict[str, Any]]:
    """What DetectCustomLabels must answer (every label above the floor, best first)."""
    tensor, (rw, rh, ox, oy) = reference_input(model, data)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    raw = {
        o.name: v
        for o, v in zip(session.get_outputs(), session.run(None, {"image": tensor}), strict=True)
    }
    if model.task == "classification":
        scores = raw["class_scores"][0].astype(np.float64)
        if model.activation == "softmax":
            scores = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        elif model.activation == "sigmoid":
            scores = 1 / (1 + np.exp(-scores))
        ranked = sorted(
            (
                {"Name": model.labels[k], "Confidence": 100 * float(s)}
                for k, s in enumerate(scores)
                if 100 * s >= FLOOR
            ),
            key=lambda e: -e["Confidence"],
        )
        return ranked[: model.top_k]
    rows: list[tuple[float, int, tuple[float, float, float, float]]] = []
    if model.head in ("yolov8", "yolov5"):
        head = raw["head"][0].astype(np.float64)
        head = head.T if model.head == "yolov8" else head
        for anchor in head:
            cx, cy, w, h = anchor[:4]
            scores = anchor[4:] if model.head == "yolov8" else anchor[5:] * anchor[4]
            best = int(np.argmax(scores))
            rows.append(
                (100 * float(scores[best]), best, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            )
    else:
        count = int(raw["count"][0]) if model.count else len(raw["boxes"][0])
        for k in range(count):
            a, b, c, d = (float(v) for v in raw["boxes"][0][k])
            if model.box == "xywh":
                c, d = a + c, b + d
            if model.units == "normalised":
                a, c = a * model.width, c * model.width
                b, d = b * model.height, d * model.height
            rows.append((100 * float(raw["scores"][0][k]), int(raw["classes"][0][k]), (a, b, c, d)))
    rows = sorted((r for r in rows if r[0] >= FLOOR), key=lambda r: -r[0])
    kept: list[tuple[float, int, tuple[float, float, float, float]]] = []
    for confidence, label, (a, b, c, d) in rows:
        ratios = (
            min(max((a - ox) / rw, 0.0), 1.0),
            min(max((b - oy) / rh, 0.0), 1.0),
            min(max((c - ox) / rw, 0.0), 1.0),
            min(max((d - oy) / rh, 0.0), 1.0),
        )
        if model.head != "boxes" and any(
            other_label == label and _iou(ratios, other) > 0.5 for _, other_label, other in kept
        ):
            continue
        kept.append((confidence, label, ratios))
    return [
        {
            "Name": model.labels[label],
            "Confidence": confidence,
            "Geometry": {
                "BoundingBox": {"Left": x0, "Top": y0, "Width": x1 - x0, "Height": y1 - y0}
            },
        }
        for confidence, label, (x0, y0, x1, y1) in kept
    ]


def matches(got: dict[str, Any], want: dict[str, Any]) -> bool:
    if got["Name"] != want["Name"] or abs(got["Confidence"] - want["Confidence"]) > 0.01:
        return False
    if "Geometry" not in want:
        return "Geometry" not in got
    box, want_box = got["Geometry"]["BoundingBox"], want["Geometry"]["BoundingBox"]
    return all(abs(box[key] - want_box[key]) <= 0.001 for key in want_box)


def compare(got: list[dict[str, Any]], want: list[dict[str, Any]], where: str) -> None:
    """Same results, best first. Results whose confidences differ by less than the
    tolerance may come in either order, so each wanted one is matched to one answered."""
    confidences = [g["Confidence"] for g in got]
    assert confidences == sorted(confidences, reverse=True), where
    assert len(got) == len(want), (where, got, want)
    unmatched = list(got)
    for position, entry in enumerate(want):
        found = next((g for g in unmatched if matches(g, entry)), None)
        assert found is not None, (where, position, entry, got[position])
        # in the same place, up to an exchange with a result of (almost) equal confidence
        assert abs(got[position]["Confidence"] - entry["Confidence"]) <= 0.01, where
        unmatched.remove(found)


def import_flags(model: OwnModel, onnx_path: Path, labels_path: Path, out: Path) -> list[str]:
    """`kiu model import` arguments for the model (labels from a file unless in metadata)."""
    args = [str(onnx_path), "--task", model.task, "--out", str(out), *model.flags]
    if not model.metadata:
        labels_path.write_text("".join(f"{name}\n" for name in model.labels))
        args += ["--labels", str(labels_path)]
    return args


def metadata_labels(labels: list[str], *, key: str) -> dict[str, str]:
    """Class names as exporters store them: Ultralytics' dict literal, else a JSON list."""
    if key == "names":
        return {key: str(dict(enumerate(labels)))}
    return {key: json.dumps(labels)}


IMAGENET = {"scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
FIVE = ["tabby", "tiger", "lynx", "puma", "ocelot"]
THREE = ["person", "bicycle", "car"]

#: `kiu model import` flags naming the post-processed outputs the test models give.
BOXES_FLAGS = [
    *("--format", "boxes", "--boxes", "boxes"),
    *("--scores", "scores", "--classes", "classes"),
]
#: One model per input layout, element type, resize recipe, colour order, label source,
#: output form and detection format.
MODELS = [
    # NCHW float32, shorter side 73 + centre crop 64, ImageNet mean/std, logits -> softmax, top 3
    OwnModel(
        "cls-imagenet",
        "classification",
        FIVE,
        resize="shorter-side",
        resize_size=73,
        activation="softmax",
        top_k=3,
        flags=["--preset", "imagenet", "--top-k", "3"],
        seed=1,
        **IMAGENET,
    ),
    # NHWC float16 in and out, stretch to 48x40, BGR, /255, softmax inside, labels inline
    OwnModel(
        "cls-nhwc-fp16-bgr",
        "classification",
        FIVE,
        layout="NHWC",
        dtype="float16",
        width=48,
        height=40,
        colour="BGR",
        scale=1 / 255,
        softmax_inside=True,
        output_dtype="float16",
        seed=2,
        flags=["--preset", "raw", "--colour", "BGR", "--scale", str(1 / 255), "--inline-labels"],
    ),
    # grey uint8, letterbox with a black border, nearest, multi-label sigmoid, labels in
    # the model's metadata as a JSON list
    OwnModel(
        "cls-grey-uint8-sigmoid",
        "classification",
        THREE,
        dtype="uint8",
        channels=1,
        width=56,
        height=56,
        resize="letterbox",
        pad=0,
        interpolation="nearest",
        activation="sigmoid",
        metadata=metadata_labels(THREE, key="classes"),
        seed=3,
        flags=[
            "--preset",
            "yolo",
            "--pad",
            "0",
            "--interpolation",
            "nearest",
            "--activation",
            "sigmoid",
        ],
    ),
    # YOLOv8-style head [N, 4+C, A], dynamic input size fed at 64x64, letterbox 114,
    # labels as Ultralytics writes them
    OwnModel(
        "det-yolov8-dynamic",
        "object-detection",
        THREE,
        dynamic=True,
        resize="letterbox",
        scale=1 / 255,
        head="yolov8",
        metadata=metadata_labels(THREE, key="names"),
        seed=4,
        flags=["--preset", "yolo", "--size", "64x64"],
    ),
    # YOLOv5-style head [N, A, 5+C], NHWC, stretch, BGR
    OwnModel(
        "det-yolov5-nhwc-bgr",
        "object-detection",
        THREE,
        layout="NHWC",
        width=64,
        height=48,
        colour="BGR",
        scale=1 / 255,
        head="yolov5",
        seed=5,
        flags=["--preset", "yolo", "--resize", "stretch", "--colour", "BGR"],
    ),
    # post-processed boxes xyxy in input pixels with a count, ImageNet crop
    OwnModel(
        "det-boxes-xyxy-count",
        "object-detection",
        THREE,
        resize="shorter-side",
        resize_size=73,
        head="boxes",
        box="xyxy",
        count=True,
        seed=6,
        **IMAGENET,
        flags=[
            "--preset",
            "imagenet",
            *BOXES_FLAGS,
            "--count",
            "count",
        ],
    ),
    # post-processed boxes xywh normalised, float16 input, letterbox, bicubic
    OwnModel(
        "det-boxes-xywh-normalised",
        "object-detection",
        THREE,
        dtype="float16",
        resize="letterbox",
        interpolation="bicubic",
        scale=1 / 255,
        head="boxes",
        box="xywh",
        units="normalised",
        seed=7,
        flags=[
            "--preset",
            "yolo",
            *BOXES_FLAGS,
            "--box",
            "xywh",
            "--units",
            "normalised",
            "--interpolation",
            "bicubic",
        ],
    ),
]
