"""Model outputs -> what a caller reads: label names, confidences, default thresholds, boxes.

Every candidate at or above `CONFIDENCE_FLOOR` is returned, best first, so the
caller applies MinConfidence (or, without it, each label's own threshold) as
the reference API does. Items of a batch may have different numbers of
results; shorter ones are padded with an empty label, confidence 0 and
threshold 100, which no filter keeps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

LABELS = "LABELS"
CONFIDENCES = "CONFIDENCES"
THRESHOLDS = "THRESHOLDS"
BOXES = "BOXES"

#: Percent. Candidates below it are never returned: MinConfidence below 1 acts as 1.
CONFIDENCE_FLOOR = 1.0
#: Two boxes of one label overlapping more than this are one object.
NMS_IOU = 0.5


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


def classify(probabilities: np.ndarray, *, labels: LabelSet) -> dict[str, np.ndarray]:
    """(N, C) class probabilities -> LABELS, CONFIDENCES, THRESHOLDS, each (N, K)."""
    _check_classes(probabilities.shape[-1], labels)
    rows = []
    for row in np.asarray(probabilities, dtype=np.float64) * 100.0:
        order = np.argsort(-row, kind="stable")
        rows.append([_Result(int(k), float(row[k])) for k in order if row[k] >= CONFIDENCE_FLOOR])
    return _pack(rows, labels=labels, with_boxes=False)


def detect(
    scores: np.ndarray, candidates: np.ndarray, *, labels: LabelSet
) -> dict[str, np.ndarray]:
    """(N, A, C) scores and (N, A, 4) centre-size boxes -> LABELS, CONFIDENCES, THRESHOLDS, BOXES.

    Each anchor keeps its best class; boxes become (left, top, width, height)
    ratios clipped to the image; non-maximum suppression runs per label.
    """
    _check_classes(scores.shape[-1], labels)
    rows = []
    for item_scores, item_boxes in zip(scores, candidates, strict=True):
        best = np.argmax(item_scores, axis=-1)
        confidence = np.take_along_axis(item_scores, best[:, None], axis=-1)[:, 0] * 100.0
        keep = np.flatnonzero(confidence >= CONFIDENCE_FLOOR)
        keep = keep[np.argsort(-confidence[keep], kind="stable")]
        boxes = _corner_boxes(np.asarray(item_boxes, dtype=np.float64)[keep])
        chosen: list[_Result] = []
        chosen_boxes: list[np.ndarray] = []
        for anchor, box in zip(keep, boxes, strict=True):
            label = int(best[anchor])
            if any(
                previous.label == label and _iou(box, other) > NMS_IOU
                for previous, other in zip(chosen, chosen_boxes, strict=True)
            ):
                continue
            chosen.append(_Result(label, float(confidence[anchor]), _ltwh(box)))
            chosen_boxes.append(box)
        rows.append(chosen)
    return _pack(rows, labels=labels, with_boxes=True)


def _check_classes(count: int, labels: LabelSet) -> None:
    if count != len(labels.names):
        raise ValueError(f"model gives {count} classes, the label file names {len(labels.names)}")


def _corner_boxes(centre_size: np.ndarray) -> np.ndarray:
    """(M, 4) centre x, centre y, width, height -> (M, 4) x0, y0, x1, y1 clipped to [0, 1]
    (a negative size is an empty box)."""
    half = np.maximum(centre_size[:, 2:], 0) / 2
    corners: np.ndarray = np.clip(
        np.concatenate([centre_size[:, :2] - half, centre_size[:, :2] + half], axis=1), 0.0, 1.0
    )
    return corners


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
