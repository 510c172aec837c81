"""Model outputs -> what a caller reads: label names, confidences, default thresholds, boxes.

How to read a model's outputs comes from its contract (`kiu.contract`):
classification scores with an activation, or one of the detection formats.
Every candidate at or above `CONFIDENCE_FLOOR` is returned, best first, so the
caller applies MinConfidence (or, without it, each label's own threshold) as
the reference API does. Items of a batch may have different numbers of
results; shorter ones are padded with an empty label, confidence 0 and
threshold 100, which no filter keeps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kiu.contract import Activation, Detection, Placement

LABELS = "LABELS"
CONFIDENCES = "CONFIDENCES"
THRESHOLDS = "THRESHOLDS"
BOXES = "BOXES"

#: Percent. Candidates below it are never returned: MinConfidence below 1 acts as 1.
CONFIDENCE_FLOOR = 1.0


@dataclass(frozen=True)
class LabelSet:
    """Class names in model output order and each one's default threshold (percent)."""

    names: tuple[str, ...]
    thresholds: tuple[float, ...]

    @classmethod
    def parse(cls, *, labels: str, thresholds: str) -> LabelSet:
        """Read a Triton label file (one name per line) and a JSON object name -> threshold."""
        names = tuple(line.strip() for line in labels.splitlines() if line.strip())
        by_name = json.loads(thresholds)
        missing = [name for name in names if name not in by_name]
        if missing:
            raise ValueError(f"no default threshold for labels {missing}")
        return cls(names=names, thresholds=tuple(float(by_name[name]) for name in names))


@dataclass(frozen=True)
class _Result:
    label: int
    confidence: float
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def classify(
    scores: np.ndarray,
    *,
    labels: LabelSet,
    activation: Activation = "none",
    top_k: int | None = None,
) -> dict[str, np.ndarray]:
    """(N, C) class scores -> LABELS, CONFIDENCES, THRESHOLDS, each (N, K).

    `activation` makes confidences of logits: softmax (one class per image) or
    sigmoid (each class on its own, multi-label); none takes probabilities.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    _check_classes(scores.shape[-1], labels)
    if activation == "softmax":
        exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores = exp / exp.sum(axis=-1, keepdims=True)
    elif activation == "sigmoid":
        scores = 1.0 / (1.0 + np.exp(-scores))
    rows = []
    for row in scores * 100.0:
        order = np.argsort(-row, kind="stable")
        kept = [_Result(int(k), float(row[k])) for k in order if row[k] >= CONFIDENCE_FLOOR]
        rows.append(kept[:top_k])
    return _pack(rows, labels=labels, with_boxes=False)


@dataclass(frozen=True)
class Candidates:
    """One image's candidate objects: corners (M, 4) x0, y0, x1, y1 in model-input pixels,
    class indices (M,) and confidences (M,) in percent."""

    corners: np.ndarray
    classes: np.ndarray
    confidences: np.ndarray


def candidates(
    outputs: Mapping[str, np.ndarray],
    spec: Detection,
    *,
    input_size: tuple[int, int],
    classes: int,
) -> list[Candidates]:
    """Read a batch of detector outputs in the format `spec` declares, one entry per item.

    Raw heads keep each anchor's best class; ValueError says when the class
    dimension differs from the label count or a shape fits no format.
    """
    if spec.format == "boxes":
        return _post_processed(outputs, spec, input_size=input_size, classes=classes)
    if spec.format == "anchors":
        boxes = np.asarray(outputs[str(spec.boxes)], dtype=np.float64)
        scores = np.asarray(outputs[str(spec.scores)], dtype=np.float64)
    else:
        head = np.asarray(outputs[str(spec.tensor)], dtype=np.float64)
        if head.ndim != 3:
            raise ValueError(f"{spec.format} output {spec.tensor!r} must be 3-D, got {head.shape}")
        if spec.format == "yolov8":
            head = head.transpose(0, 2, 1)  # [N, 4+C, A] -> [N, A, 4+C]
            boxes, scores = head[..., :4], head[..., 4:]
        else:
            boxes, scores = head[..., :4], head[..., 5:] * head[..., 4:5]
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(
            f"{spec.format} outputs do not fit: boxes {boxes.shape}, scores {scores.shape}"
        )
    _check_classes(scores.shape[-1], classes)
    items = []
    for item_boxes, item_scores in zip(boxes, scores, strict=True):
        best = np.argmax(item_scores, axis=-1)
        confidence = np.take_along_axis(item_scores, best[:, None], axis=-1)[:, 0] * 100.0
        corners = _corners(item_boxes, spec, input_size=input_size)
        items.append(Candidates(corners, best, confidence))
    return items


def _post_processed(
    outputs: Mapping[str, np.ndarray],
    spec: Detection,
    *,
    input_size: tuple[int, int],
    classes: int,
) -> list[Candidates]:
    boxes = np.asarray(outputs[str(spec.boxes)], dtype=np.float64)
    scores = np.asarray(outputs[str(spec.scores)], dtype=np.float64)
    indices = np.rint(np.asarray(outputs[str(spec.classes)], dtype=np.float64)).astype(np.int64)
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes output {spec.boxes!r} must be [N, K, 4], got {boxes.shape}")
    scores = scores.reshape(boxes.shape[:2])
    indices = indices.reshape(boxes.shape[:2])
    counts = (
        np.asarray(outputs[spec.count]).reshape(-1).astype(np.int64)
        if spec.count is not None
        else np.full(len(boxes), boxes.shape[1])
    )
    items = []
    for item_boxes, item_scores, item_classes, count in zip(
        boxes, scores, indices, counts, strict=True
    ):
        valid = np.arange(len(item_boxes)) < count
        valid &= item_classes >= 0  # exporters pad with class -1
        if (item_classes[valid] >= classes).any():
            raise ValueError(
                f"model gives class {int(item_classes[valid].max())}, "
                f"the label file names {classes} classes"
            )
        items.append(
            Candidates(
                _corners(item_boxes[valid], spec, input_size=input_size),
                item_classes[valid],
                item_scores[valid] * 100.0,
            )
        )
    return items


def _corners(boxes: np.ndarray, spec: Detection, *, input_size: tuple[int, int]) -> np.ndarray:
    """(M, 4) boxes as the model writes them -> x0, y0, x1, y1 in input pixels (x1 >= x0)."""
    if spec.box == "cxcywh":
        half = np.maximum(boxes[:, 2:], 0) / 2
        corners = np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)
    elif spec.box == "xywh":
        corners = np.concatenate([boxes[:, :2], boxes[:, :2] + np.maximum(boxes[:, 2:], 0)], 1)
    else:
        corners = boxes.copy()
    corners[:, 2:] = np.maximum(corners[:, 2:], corners[:, :2])
    if spec.units == "normalised":
        corners = corners * np.array([*input_size, *input_size], dtype=np.float64)
    return corners


def detect(
    items: Sequence[Candidates],
    placements: Sequence[Placement],
    *,
    labels: LabelSet,
    suppress: bool,
    iou: float = 0.5,
    top_k: int | None = None,
) -> dict[str, np.ndarray]:
    """Candidates -> LABELS, CONFIDENCES, THRESHOLDS, BOXES.

    Boxes are mapped through each image's placement to (left, top, width,
    height) ratios of the original image, clipped to it; with `suppress`, a
    box overlapping a better one of the same label by more than `iou` is
    dropped (class-aware non-maximum suppression).
    """
    rows = []
    for item, place in zip(items, placements, strict=True):
        keep = np.flatnonzero(item.confidences >= CONFIDENCE_FLOOR)
        keep = keep[np.argsort(-item.confidences[keep], kind="stable")]
        x0, y0 = place.to_ratios(item.corners[keep, 0], item.corners[keep, 1])
        x1, y1 = place.to_ratios(item.corners[keep, 2], item.corners[keep, 3])
        boxes = np.clip(np.stack([x0, y0, x1, y1], axis=1), 0.0, 1.0)
        chosen: list[_Result] = []
        chosen_boxes: list[np.ndarray] = []
        for index, box in zip(keep, boxes, strict=True):
            label = int(item.classes[index])
            if suppress and any(
                previous.label == label and _iou(box, other) > iou
                for previous, other in zip(chosen, chosen_boxes, strict=True)
            ):
                continue
            chosen.append(_Result(label, float(item.confidences[index]), _ltwh(box)))
            chosen_boxes.append(box)
        rows.append(chosen[:top_k])
    return _pack(rows, labels=labels, with_boxes=True)


def _check_classes(count: int, labels: LabelSet | int) -> None:
    expected = labels if isinstance(labels, int) else len(labels.names)
    if count != expected:
        raise ValueError(f"model gives {count} classes, the label file names {expected}")


def _ltwh(corners: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in corners)
    return (x0, y0, x1 - x0, y1 - y0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap
    return float(overlap / union) if union > 0 else 0.0


def _pack(
    rows: list[list[_Result]], *, labels: LabelSet, with_boxes: bool
) -> dict[str, np.ndarray]:
    """Pad the per-item results into (N, K) arrays, K the longest item."""
    width = max((len(row) for row in rows), default=0)
    names = np.full((len(rows), width), b"", dtype=np.object_)
    confidences = np.zeros((len(rows), width), dtype=np.float32)
    thresholds = np.full((len(rows), width), 100.0, dtype=np.float32)
    boxes = np.zeros((len(rows), width, 4), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, result in enumerate(row):
            names[i, j] = labels.names[result.label].encode()
            confidences[i, j] = result.confidence
            thresholds[i, j] = labels.thresholds[result.label]
            boxes[i, j] = result.box
    outputs: dict[str, np.ndarray] = {
        LABELS: names,
        CONFIDENCES: confidences,
        THRESHOLDS: thresholds,
    }
    if with_boxes:
        outputs[BOXES] = boxes
    return outputs
