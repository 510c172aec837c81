"""A model's declared contract: how images become its input tensor and its outputs become labels.

A repository declares this once, in `contract.json` next to its Python steps,
so a user's own trained model needs no code in kiu: the preprocess step reads
the input half (tensor name, layout, dtype, size, resize recipe, colour order,
scale, mean and std), the postprocess step the output half (classification
scores, or one of the detection formats exporters produce). Both runtimes
build their steps from the same parsed contract.

Pure data and decisions, no I/O: `Contract.parse` takes the file's text, and
`Placement` says where an image of a given size lands in the model input and
how a point of the input maps back to ratios of the original image (the unit
the reference API reports boxes in).

The file (JSON; every key but `task`, `input` and `output` has a default)::

    {"task": "classification" | "object_detection",
     "input": {"name": "images", "layout": "NCHW" | "NHWC",
               "dtype": "float32" | "float16" | "uint8", "channels": 3 | 1,
               "width": 224, "height": 224},
     "resize": {"mode": "stretch" | "shorter-side" | "letterbox",
                "size": 256,            # shorter-side: the shorter side, then a centre crop
                "pad": 114,             # letterbox: the grey level of the border
                "interpolation": "bilinear" | "nearest" | "bicubic" | "lanczos"},
     "colour": "RGB" | "BGR", "scale": 0.00392156862745098,
     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
     "output": <classification or detection, see `Classification` and `Detection`>,
     "labels": ["cat", "dog"]}          # optional: else the step's labels.txt
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

FILE = "contract.json"

Task = Literal["classification", "object_detection"]
Layout = Literal["NCHW", "NHWC"]
DType = Literal["float32", "float16", "uint8"]
ResizeMode = Literal["stretch", "shorter-side", "letterbox"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos"]
Colour = Literal["RGB", "BGR"]
Activation = Literal["softmax", "sigmoid", "none"]
DetectionFormat = Literal["yolov8", "yolov5", "anchors", "boxes"]
BoxEncoding = Literal["cxcywh", "xyxy", "xywh"]
Units = Literal["pixels", "normalised"]

TASKS: tuple[Task, ...] = ("classification", "object_detection")
LAYOUTS: tuple[Layout, ...] = ("NCHW", "NHWC")
DTYPES: tuple[DType, ...] = ("float32", "float16", "uint8")
RESIZE_MODES: tuple[ResizeMode, ...] = ("stretch", "shorter-side", "letterbox")
INTERPOLATIONS: tuple[Interpolation, ...] = ("nearest", "bilinear", "bicubic", "lanczos")
COLOURS: tuple[Colour, ...] = ("RGB", "BGR")
ACTIVATIONS: tuple[Activation, ...] = ("softmax", "sigmoid", "none")
DETECTION_FORMATS: tuple[DetectionFormat, ...] = ("yolov8", "yolov5", "anchors", "boxes")
BOX_ENCODINGS: tuple[BoxEncoding, ...] = ("cxcywh", "xyxy", "xywh")
UNITS: tuple[Units, ...] = ("pixels", "normalised")

#: The preprocess step's second output: each item's original (width, height), which the
#: detection postprocess needs to map boxes back through a crop or letterbox.
ORIGINAL_SIZE = "ORIGINAL_SIZE"


class ContractError(ValueError):
    """The contract file is not valid: the message names the key and the accepted values."""


@dataclass(frozen=True)
class Input:
    """The model's image tensor: name, memory layout, element type and the size kiu feeds."""

    name: str
    layout: Layout = "NCHW"
    dtype: DType = "float32"
    channels: int = 3
    width: int = 224
    height: int = 224

    def dims(self) -> tuple[int, int, int]:
        """The tensor's shape without the batch dimension."""
        if self.layout == "NCHW":
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)


@dataclass(frozen=True)
class Resize:
    """How an image of any size becomes `width` x `height` pixels."""

    mode: ResizeMode = "stretch"
    size: int | None = None
    pad: int = 114
    interpolation: Interpolation = "bilinear"


@dataclass(frozen=True)
class Placement:
    """Where an original image lands in the model input.

    The image is resized to `resized` (width, height) and its top-left corner
    placed at `offset` in the input: negative offsets crop, positive ones pad.
    """

    original: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]

    def to_ratios(self, xs: Any, ys: Any) -> tuple[Any, Any]:
        """Input-pixel coordinates (numbers or numpy arrays) -> ratios of the original image."""
        return (xs - self.offset[0]) / self.resized[0], (ys - self.offset[1]) / self.resized[1]


def placement(resize: Resize, *, original: tuple[int, int], target: tuple[int, int]) -> Placement:
    """Decide the resize and crop or padding that fits an `original` image into `target`.

    stretch: the whole image to the target size; shorter-side: the shorter side
    to `resize.size` (the longer in proportion, truncated as torchvision does),
    then a centre crop; letterbox: the largest proportional size that fits
    (rounded), centred on a padded canvas.
    """
    width, height = original
    target_w, target_h = target
    if resize.mode == "stretch":
        return Placement(original, (target_w, target_h), (0, 0))
    if resize.mode == "shorter-side":
        side = resize.size or min(target_w, target_h)
        if width <= height:
            resized = (side, int(side * height / width))
        else:
            resized = (int(side * width / height), side)
        offset = (-((resized[0] - target_w) // 2), -((resized[1] - target_h) // 2))
        return Placement(original, resized, offset)
    ratio = min(target_w / width, target_h / height)
    resized = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return Placement(
        original, resized, ((target_w - resized[0]) // 2, (target_h - resized[1]) // 2)
    )


@dataclass(frozen=True)
class Classification:
    """Class scores `[N, C]` in `tensor`: logits or probabilities.

    `activation` turns them into confidences (softmax for one class per image,
    sigmoid for multi-label, none when the model already gives probabilities);
    `top_k` caps the results per image.
    """

    tensor: str
    activation: Activation = "none"
    top_k: int | None = None


@dataclass(frozen=True)
class Detection:
    """Detector outputs in one of the formats exporters produce.

    - `yolov8`: one tensor `[N, 4+C, A]` (YOLOv8/11 family), cx, cy, w, h then class scores;
    - `yolov5`: one tensor `[N, A, 5+C]` (YOLOv5/7 family), cx, cy, w, h, objectness, class
      scores; confidence is objectness x class score;
    - `anchors`: `boxes` `[N, A, 4]` and `scores` `[N, A, C]` in separate tensors;
    - `boxes`: already post-processed `boxes` `[N, K, 4]`, `scores` `[N, K]`, `classes`
      `[N, K]` and optionally `count` `[N]` (valid rows first).

    For the first three kiu keeps each anchor's best class and runs class-aware
    non-maximum suppression at `iou`; `boxes` is taken as it is. `box` and
    `units` say how boxes are written (YOLO heads: cxcywh in input pixels).
    """

    format: DetectionFormat
    tensor: str | None = None
    boxes: str | None = None
    scores: str | None = None
    classes: str | None = None
    count: str | None = None
    box: BoxEncoding = "cxcywh"
    units: Units = "pixels"
    iou: float = 0.5
    top_k: int | None = None

    @property
    def tensors(self) -> tuple[str, ...]:
        """The model outputs this format reads, in a fixed order."""
        names = (self.tensor, self.boxes, self.scores, self.classes, self.count)
        return tuple(name for name in names if name is not None)

    @property
    def suppresses(self) -> bool:
        """Whether kiu runs non-maximum suppression (raw heads) or trusts the model's."""
        return self.format != "boxes"


@dataclass(frozen=True)
class Contract:
    """Everything a unit needs to know about a model it did not train."""

    task: Task
    input: Input
    output: Classification | Detection
    resize: Resize = field(default_factory=Resize)
    colour: Colour = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    labels: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> Contract:
        """Read and check a contract file's text; ContractError names what is wrong."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ContractError(f"{FILE} is not JSON: {error}") from error
        return cls.from_dict(_mapping(document, FILE))

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Contract:
        """Build and check a contract from its parsed form."""
        _known(
            document,
            "",
            ("task", "input", "resize", "colour", "scale", "mean", "std", "output", "labels"),
        )
        task = _choice(document, "task", TASKS, None)
        model_input = _input(_mapping(document.get("input"), "input"))
        resize = _resize(_mapping(document.get("resize", {}), "resize"))
        output: Classification | Detection
        raw_output = _mapping(document.get("output"), "output")
        output = _classification(raw_output) if task == "classification" else _detection(raw_output)
        contract = cls(
            task=task,
            input=model_input,
            output=output,
            resize=resize,
            colour=_choice(document, "colour", COLOURS, "RGB"),
            scale=_number(document, "scale", 1.0),
            mean=_vector(document, "mean", (0.0,), model_input.channels),
            std=_vector(document, "std", (1.0,), model_input.channels),
            labels=_labels(document.get("labels")),
        )
        contract.check()
        return contract

    def check(self) -> None:
        """Refuse combinations no model can mean."""
        if self.input.dtype == "uint8" and (
            self.scale != 1.0 or any(self.mean) or any(s != 1.0 for s in self.std)
        ):
            raise ContractError("input.dtype uint8 takes raw pixels: drop scale, mean and std")
        if any(s == 0 for s in self.std):
            raise ContractError("std must not contain 0")
        if (
            self.resize.mode == "shorter-side"
            and self.resize.size is not None
            and (self.resize.size < min(self.input.width, self.input.height))
        ):
            raise ContractError(
                f"resize.size {self.resize.size} is smaller than the input "
                f"{self.input.width}x{self.input.height}: the centre crop would pad"
            )
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ContractError("labels must be unique")

    def placement(self, original: tuple[int, int]) -> Placement:
        """Where an image of size `original` (width, height) lands in this model's input."""
        return placement(
            self.resize, original=original, target=(self.input.width, self.input.height)
        )

    def to_dict(self) -> dict[str, Any]:
        """The contract as its file holds it (defaults included), for writing and printing."""
        document: dict[str, Any] = {
            "task": self.task,
            "input": _fields(self.input),
            "resize": _fields(self.resize),
            "colour": self.colour,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "output": _fields(self.output),
        }
        if self.labels is not None:
            document["labels"] = list(self.labels)
        return document

    def dump(self) -> str:
        """The text of `contract.json`."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _fields(value: Any) -> dict[str, Any]:
    return {
        name: getattr(value, name)
        for name in value.__dataclass_fields__
        if getattr(value, name) is not None
    }


def _input(document: Mapping[str, Any]) -> Input:
    _known(document, "input.", ("name", "layout", "dtype", "channels", "width", "height"))
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise ContractError("input.name must name the model's image tensor")
    channels = _integer(document, "channels", 3, "input.")
    if channels not in (1, 3):
        raise ContractError(f"input.channels must be 1 or 3, not {channels}")
    return Input(
        name=name,
        layout=_choice(document, "layout", LAYOUTS, "NCHW", "input."),
        dtype=_choice(document, "dtype", DTYPES, "float32", "input."),
        channels=channels,
        width=_integer(document, "width", None, "input."),
        height=_integer(document, "height", None, "input."),
    )


def _resize(document: Mapping[str, Any]) -> Resize:
    _known(document, "resize.", ("mode", "size", "pad", "interpolation"))
    size = document.get("size")
    if size is not None:
        size = _integer(document, "size", None, "resize.")
    pad = _integer(document, "pad", 114, "resize.", minimum=0)
    if pad > 255:
        raise ContractError(f"resize.pad must be a grey level 0..255, not {pad}")
    return Resize(
        mode=_choice(document, "mode", RESIZE_MODES, "stretch", "resize."),
        size=size,
        pad=pad,
        interpolation=_choice(document, "interpolation", INTERPOLATIONS, "bilinear", "resize."),
    )


def _classification(document: Mapping[str, Any]) -> Classification:
    _known(document, "output.", ("tensor", "activation", "top_k"))
    return Classification(
        tensor=_name(document, "tensor"),
        activation=_choice(document, "activation", ACTIVATIONS, "none", "output."),
        top_k=_optional_integer(document, "top_k"),
    )


def _detection(document: Mapping[str, Any]) -> Detection:
    _known(
        document,
        "output.",
        ("format", "tensor", "boxes", "scores", "classes", "count", "box", "units", "iou", "top_k"),
    )
    fmt = _choice(document, "format", DETECTION_FORMATS, None, "output.")
    needed = {
        "yolov8": ("tensor",),
        "yolov5": ("tensor",),
        "anchors": ("boxes", "scores"),
        "boxes": ("boxes", "scores", "classes"),
    }[fmt]
    allowed = (*needed, "count") if fmt == "boxes" else needed
    for key in ("tensor", "boxes", "scores", "classes", "count"):
        if key in document and key not in allowed:
            raise ContractError(f"output.{key} does not apply to format {fmt!r}")
    names = {key: _name(document, key) for key in needed}
    if "count" in document:
        names["count"] = _name(document, "count")
    box = _choice(document, "box", BOX_ENCODINGS, "cxcywh" if fmt != "boxes" else "xyxy", "output.")
    units = _choice(document, "units", UNITS, "pixels", "output.")
    if fmt in ("yolov8", "yolov5") and (box, units) != ("cxcywh", "pixels"):
        raise ContractError(f"format {fmt!r} writes cxcywh boxes in input pixels")
    iou = _number(document, "iou", 0.5, "output.")
    if not 0.0 < iou <= 1.0:
        raise ContractError(f"output.iou must be in (0, 1], not {iou}")
    return Detection(
        format=fmt,
        box=box,
        units=units,
        iou=iou,
        top_k=_optional_integer(document, "top_k"),
        **names,
    )


def _labels(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ContractError("labels must be a list of non-empty names")
    return tuple(value)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ContractError(f"{where} must be an object")
    return cast(Mapping[str, Any], value)


def _known(document: Mapping[str, Any], prefix: str, keys: Sequence[str]) -> None:
    unknown = sorted(set(document) - set(keys))
    if unknown:
        raise ContractError(
            f"unknown key {prefix}{unknown[0]}; known: {', '.join(prefix + k for k in keys)}"
        )


def _choice(
    document: Mapping[str, Any], key: str, allowed: Sequence[Any], default: Any, prefix: str = ""
) -> Any:
    value = document.get(key, default)
    if value is None:
        raise ContractError(f"{prefix}{key} is required: one of {', '.join(allowed)}")
    if value not in allowed:
        raise ContractError(f"{prefix}{key} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _name(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise ContractError(f"output.{key} must name a model output tensor")
    return value


def _number(document: Mapping[str, Any], key: str, default: float, prefix: str = "") -> float:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ContractError(f"{prefix}{key} must be a finite number, not {value!r}")
    return float(value)


def _integer(
    document: Mapping[str, Any], key: str, default: int | None, prefix: str, *, minimum: int = 1
) -> int:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ContractError(f"{prefix}{key} must be an integer >= {minimum}, not {value!r}")
    return value


def _optional_integer(document: Mapping[str, Any], key: str) -> int | None:
    if document.get(key) is None:
        return None
    return _integer(document, key, None, "output.")


def _vector(
    document: Mapping[str, Any], key: str, default: tuple[float, ...], channels: int
) -> tuple[float, ...]:
    value = document.get(key, list(default))
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise ContractError(f"{key} must be a number or a list of {channels} numbers")
    if len(value) not in (1, channels):
        raise ContractError(f"{key} has {len(value)} values; the input has {channels} channels")
    return tuple(float(v) for v in value)
