"""Train the two bundled models on generated shapes and export them to triton-models/.

    .venv/bin/pip install -r hack/requirements-train.txt
    .venv/bin/python hack/train_models.py [--only classifier|detector]

Writes each model's ONNX graph and its postprocess step's labels.txt and
thresholds.json, then prints held-out metrics (copied into
triton-models/README.md). The networks are small all-convolutional nets with
batch normalisation behind a fixed colour-blind contrast front end, trained
with plain numpy (im2col convolutions, hand-written gradients, Adam), so
retraining needs no deep-learning framework: about 11 minutes on two cores.
Data, initialisation and batch order are seeded; the resulting weights can
still differ in the last bits between BLAS builds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from kiu.contract import Classification, Contract, Detection, Input, Resize, placement
from kiu.imaging import postprocessing, preprocessing, scenes

DEFAULT_REPOSITORY = Path(__file__).resolve().parents[1] / "triton-models"
CLASSES = len(scenes.SHAPES)
OPSET = 17
IR_VERSION = 9  # loadable by the onnxruntime in Triton 24.x/25.x images

CLASSIFIER_SIZE = 64
DETECTOR_SIZE = 96
GRID = 6  # detector cells per side: DETECTOR_SIZE / total stride 16
ANCHOR = 0.28  # box width/height ratio the detector's size outputs are relative to
LOG_SIZE_LIMITS = (-4.0, 2.0)  # clip of the size logits, in training and in the graph

BN_EPSILON = 1e-5
SEEDS = {"train": 1, "validation": 2, "test": 3}


# ---------------------------------------------------------------- layers


@dataclass
class Conv:
    """k x k convolution (padding k // 2) on NHWC arrays, then optionally batch normalisation
    (folded into the convolution on export) and ReLU."""

    weight: np.ndarray  # (k, k, in, out)
    bias: np.ndarray  # the batch-norm shift when normalised
    stride: int
    relu: bool
    scale: np.ndarray | None = None  # batch-norm scale; None: no normalisation
    mean: np.ndarray | None = None  # running statistics for inference
    var: np.ndarray | None = None
    training: bool = True
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls,
        rng: np.random.Generator,
        *,
        k: int,
        cin: int,
        cout: int,
        stride: int,
        relu: bool,
        norm: bool,
    ) -> Conv:
        scale = math.sqrt(2.0 / (k * k * cin))
        weight = rng.normal(0, scale, size=(k, k, cin, cout)).astype(np.float32)
        conv = cls(weight, np.zeros(cout, np.float32), stride, relu)
        if norm:
            conv.scale = np.ones(cout, np.float32)
            conv.mean = np.zeros(cout, np.float32)
            conv.var = np.ones(cout, np.float32)
        return conv

    @property
    def params(self) -> list[np.ndarray]:
        return [self.weight, self.bias] + ([self.scale] if self.scale is not None else [])

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Weight and bias with the inference-time normalisation folded in."""
        if self.scale is None:
            return self.weight, self.bias
        assert self.mean is not None
        assert self.var is not None
        factor = self.scale / np.sqrt(self.var + BN_EPSILON)
        return self.weight * factor, self.bias - self.mean * factor

    def forward(self, x: np.ndarray) -> np.ndarray:
        k = self.weight.shape[0]
        cols, (n, ho, wo) = _patches(x, k=k, stride=self.stride)
        if self.scale is None or self.training:
            weight, bias = self.weight, self.bias
        else:
            weight, bias = self.folded()
        out = cols @ weight.reshape(-1, weight.shape[3])
        if self.scale is not None and self.training:
            assert self.mean is not None
            assert self.var is not None
            mean, var = out.mean(axis=0), out.var(axis=0)
            self.mean = 0.9 * self.mean + 0.1 * mean
            self.var = 0.9 * self.var + 0.1 * var
            inverse = 1.0 / np.sqrt(var + BN_EPSILON)
            normalised = (out - mean) * inverse
            self._cache.update(normalised=normalised, inverse=inverse)
            out = normalised * self.scale + bias
        else:
            out = out + bias
        out = out.reshape(n, ho, wo, -1)
        mask = out > 0 if self.relu else None
        self._cache.update(cols=cols, shape=x.shape, mask=mask)
        return np.where(mask, out, 0) if mask is not None else out

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        cols, shape, mask = (self._cache[key] for key in ("cols", "shape", "mask"))
        assert isinstance(cols, np.ndarray)
        assert isinstance(shape, tuple)
        if isinstance(mask, np.ndarray):
            grad = np.where(mask, grad, 0)
        g2 = grad.reshape(-1, grad.shape[-1])
        grads = [g2.sum(axis=0)]
        if self.scale is not None:
            normalised, inverse = self._cache["normalised"], self._cache["inverse"]
            assert isinstance(normalised, np.ndarray)
            assert isinstance(inverse, np.ndarray)
            grads.append((g2 * normalised).sum(axis=0))
            dnorm = g2 * self.scale
            g2 = inverse * (
                dnorm - dnorm.mean(axis=0) - normalised * (dnorm * normalised).mean(axis=0)
            )
        dweight = (cols.T @ g2).reshape(self.weight.shape)
        dcols = g2 @ self.weight.reshape(-1, self.weight.shape[3]).T
        k = self.weight.shape[0]
        dx = _unpatches(dcols, shape=shape, k=k, stride=self.stride, out=grad.shape)
        return dx, [dweight, *grads]


def _patches(x: np.ndarray, *, k: int, stride: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    n, h, w, c = x.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    cols = np.empty((n, ho, wo, k, k, c), dtype=np.float32)
    for i in range(k):
        for j in range(k):
            cols[:, :, :, i, j, :] = xp[
                :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride
            ]
    return cols.reshape(n * ho * wo, k * k * c), (n, ho, wo)


def _unpatches(
    dcols: np.ndarray, *, shape: tuple[int, ...], k: int, stride: int, out: tuple[int, ...]
) -> np.ndarray:
    n, h, w, c = shape
    ho, wo = out[1], out[2]
    pad = k // 2
    dcols = dcols.reshape(n, ho, wo, k, k, c)
    dxp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=np.float32)
    for i in range(k):
        for j in range(k):
            dxp[
                :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride
            ] += dcols[:, :, :, i, j, :]
    return dxp[:, pad : pad + h, pad : pad + w]


def _backbone(
    rng: np.random.Generator, widths: Sequence[int], strides: Sequence[int]
) -> list[Conv]:
    layers, cin = [], 1  # the contrast map
    for cout, stride in zip(widths, strides, strict=True):
        layers.append(
            Conv.create(rng, k=3, cin=cin, cout=cout, stride=stride, relu=True, norm=True)
        )
        cin = cout
    return layers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def contrast(pixels: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) RGB -> (N, H, W, 1): per pixel, the summed absolute difference from the
    mean of its 3x3 neighbourhood (borders: mean of the pixels that exist).

    The fixed front end of both networks: it keeps the outlines of shapes and
    drops their colours and smooth background gradients, which the small
    networks otherwise spend most of their training learning to ignore.
    """
    _n, _c, h, w = pixels.shape
    padded = np.pad(pixels, ((0, 0), (0, 0), (1, 1), (1, 1)))
    total = sum(padded[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3))
    ones = np.pad(np.ones((h, w), np.float32), 1)
    count = sum(ones[i : i + h, j : j + w] for i in range(3) for j in range(3))
    difference = np.abs(pixels - total / count).sum(axis=1, keepdims=True)
    return np.ascontiguousarray(difference.transpose(0, 2, 3, 1), dtype=np.float32)


# ---------------------------------------------------------------- networks


class Classifier:
    """Four convolutions (total stride 8), global max pooling, a dense layer, softmax."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.convs = _backbone(rng, (16, 32, 64, 64), (2, 2, 2, 1))
        self.dense = rng.normal(0, math.sqrt(1.0 / 64), size=(64, CLASSES)).astype(np.float32)
        self.dense_bias = np.zeros(CLASSES, np.float32)

    @property
    def params(self) -> list[np.ndarray]:
        return [p for conv in self.convs for p in conv.params] + [self.dense, self.dense_bias]

    def logits(self, x: np.ndarray) -> np.ndarray:
        for conv in self.convs:
            x = conv.forward(x)
        self._feature_shape = x.shape
        flat = x.reshape(len(x), -1, x.shape[3])
        self._where = flat.argmax(axis=1)
        self._pooled = flat.max(axis=1)
        return self._pooled @ self.dense + self.dense_bias

    def loss(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, list[np.ndarray]]:
        probabilities = _softmax(self.logits(x))
        n = len(labels)
        loss = -float(np.log(probabilities[np.arange(n), labels] + 1e-9).mean())
        dlogits = probabilities.copy()
        dlogits[np.arange(n), labels] -= 1
        dlogits /= n
        grads_dense = [self._pooled.T @ dlogits, dlogits.sum(axis=0)]
        n, h, w, c = self._feature_shape
        flat = np.zeros((n, h * w, c), np.float32)
        np.put_along_axis(flat, self._where[:, None, :], (dlogits @ self.dense.T)[:, None], axis=1)
        grad = flat.reshape(self._feature_shape)
        grads: list[np.ndarray] = []
        for conv in reversed(self.convs):
            grad, conv_grads = conv.backward(grad)
            grads = conv_grads + grads
        return loss, grads + grads_dense


class Detector:
    """Five convolutions (total stride 16) and a 1x1 head: per cell objectness, box, class."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.convs = _backbone(rng, (16, 32, 64, 64, 64), (2, 2, 2, 2, 1))
        self.head = Conv.create(
            rng, k=1, cin=64, cout=5 + CLASSES, stride=1, relu=False, norm=False
        )
        self.head.bias[0] = -3.0  # most cells are empty: start with low objectness

    @property
    def params(self) -> list[np.ndarray]:
        return [p for conv in [*self.convs, self.head] for p in conv.params]

    def raw(self, x: np.ndarray) -> np.ndarray:
        for conv in self.convs:
            x = conv.forward(x)
        return self.head.forward(x)  # (N, GRID, GRID, 5 + C)

    def loss(self, x: np.ndarray, targets: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """`targets` (N, GRID, GRID, 6): objectness, x and y offsets in the cell, log width,
        log height, class."""
        out = self.raw(x)
        n = len(x)
        positive = targets[..., 0]
        obj = _sigmoid(out[..., 0])
        xy = _sigmoid(out[..., 1:3])
        low, high = LOG_SIZE_LIMITS
        wh = np.clip(out[..., 3:5], low, high)
        probabilities = _softmax(out[..., 5:])
        cls = targets[..., 5].astype(int)
        grad = np.zeros_like(out)
        bce = -(positive * np.log(obj + 1e-9) + (1 - positive) * np.log(1 - obj + 1e-9))
        grad[..., 0] = (obj - positive) / n
        mask = positive[..., None]
        box_weight = 5.0
        xy_error = (xy - targets[..., 1:3]) * mask
        wh_error = (wh - targets[..., 3:5]) * mask
        grad[..., 1:3] = box_weight * 2 * xy_error * xy * (1 - xy) / n
        inside = (out[..., 3:5] > low) & (out[..., 3:5] < high)
        grad[..., 3:5] = box_weight * 2 * wh_error * inside / n
        onehot = np.eye(CLASSES, dtype=np.float32)[cls]
        ce = -np.log((probabilities * onehot).sum(axis=-1) + 1e-9) * positive
        grad[..., 5:] = (probabilities - onehot) * mask / n
        loss = (
            float(bce.sum() + ce.sum() + box_weight * ((xy_error**2).sum() + (wh_error**2).sum()))
            / n
        )
        grad, grads = self.head.backward(grad.astype(np.float32))
        for conv in reversed(self.convs):
            grad, conv_grads = conv.backward(grad)
            grads = conv_grads + grads
        return loss, grads


# ---------------------------------------------------------------- training


def _adam(
    params: list[np.ndarray],
    step: Callable[[np.ndarray], tuple[float, list[np.ndarray]]],
    *,
    count: int,
    epochs: int,
    batch: int,
    rate: float,
    seed: int,
) -> None:
    """Adam with a cosine learning-rate decay; `step(indices)` returns loss and gradients."""
    rng = np.random.default_rng(seed)
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    steps = epochs * (count // batch)
    t = 0
    for epoch in range(epochs):
        started, losses = time.monotonic(), []
        order = rng.permutation(count)
        for start in range(0, count - batch + 1, batch):
            t += 1
            lr = rate * 0.5 * (1 + math.cos(math.pi * t / steps))
            loss, grads = step(order[start : start + batch])
            losses.append(loss)
            for p, g, m, v in zip(params, grads, first, second, strict=True):
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                p -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        print(
            f"  epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f} "
            f"({time.monotonic() - started:.0f}s)",
            flush=True,
        )


def _images(kind: scenes.Kind, *, seed: int, count: int, size: int) -> tuple[np.ndarray, list]:
    """Generated scenes, decoded and resized exactly as a unit does: (N, 3, size, size)."""
    generated = list(scenes.scenes(kind, seed=seed, count=count))
    contract = Contract(
        task="classification",
        input=Input("PIXELS", width=size, height=size),
        output=Classification("PROBABILITIES"),
        scale=1 / 255,
    )
    tensors, _ = preprocessing.preprocess((s.image for s in generated), contract)
    return tensors, generated


def _detector_targets(generated: list[scenes.Scene]) -> np.ndarray:
    targets = np.zeros((len(generated), GRID, GRID, 6), dtype=np.float32)
    for i, scene in enumerate(generated):
        for obj in scene.objects:
            cx, cy = (obj.left + obj.width / 2) * GRID, (obj.top + obj.height / 2) * GRID
            col, row = min(int(cx), GRID - 1), min(int(cy), GRID - 1)
            if targets[i, row, col, 0]:
                continue  # two centres in one cell: the cell predicts the first
            targets[i, row, col] = (
                1.0,
                cx - col,
                cy - row,
                math.log(obj.width / ANCHOR),
                math.log(obj.height / ANCHOR),
                scenes.SHAPES.index(obj.label),
            )
    return targets


# ---------------------------------------------------------------- ONNX export


def _conv_nodes(
    convs: Sequence[Conv], *, source: str, prefix: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    nodes, weights, current = [], [], source
    for index, conv in enumerate(convs):
        name = f"{prefix}{index}"
        weight, bias = conv.folded()
        k = weight.shape[0]
        weights += [
            numpy_helper.from_array(weight.transpose(3, 2, 0, 1).copy(), f"{name}.weight"),
            numpy_helper.from_array(bias, f"{name}.bias"),
        ]
        pad = k // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [current, f"{name}.weight", f"{name}.bias"],
                [f"{name}.out"],
                kernel_shape=[k, k],
                strides=[conv.stride, conv.stride],
                pads=[pad] * 4,
            )
        )
        current = f"{name}.out"
        if conv.relu:
            nodes.append(helper.make_node("Relu", [current], [f"{name}.relu"]))
            current = f"{name}.relu"
    return nodes, weights, current


def _contrast_nodes() -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """`contrast` as a graph: AveragePool without padded pixels, |difference|, channel sum."""
    nodes = [
        helper.make_node(
            "AveragePool",
            ["PIXELS"],
            ["local_mean"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            count_include_pad=0,
        ),
        helper.make_node("Sub", ["PIXELS", "local_mean"], ["deviation"]),
        helper.make_node("Abs", ["deviation"], ["absolute_deviation"]),
        helper.make_node(
            "ReduceSum", ["absolute_deviation", "channel_axis"], ["contrast"], keepdims=1
        ),
    ]
    return nodes, [numpy_helper.from_array(np.array([1], np.int64), "channel_axis")], "contrast"


def _freeze(convs: Sequence[Conv]) -> None:
    """Switch batch normalisation to its running statistics, as exported."""
    for conv in convs:
        conv.training = False


def _pixels_input(size: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("PIXELS", TensorProto.FLOAT, ["batch", 3, size, size])


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kiu-train"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def export_classifier(model: Classifier, path: Path) -> None:
    nodes, weights, source = _contrast_nodes()
    conv_nodes, conv_weights, features = _conv_nodes(model.convs, source=source, prefix="conv")
    nodes += conv_nodes
    weights += [
        *conv_weights,
        numpy_helper.from_array(model.dense, "dense.weight"),
        numpy_helper.from_array(model.dense_bias, "dense.bias"),
    ]
    nodes += [
        helper.make_node("GlobalMaxPool", [features], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "dense.weight", "dense.bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["PROBABILITIES"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "shapes-classifier",
        [_pixels_input(CLASSIFIER_SIZE)],
        [helper.make_tensor_value_info("PROBABILITIES", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=weights,
    )
    _save(graph, path)


def export_detector(model: Detector, path: Path) -> None:
    nodes, weights, source = _contrast_nodes()
    conv_nodes, conv_weights, features = _conv_nodes(
        [*model.convs, model.head], source=source, prefix="conv"
    )
    nodes += conv_nodes
    weights += conv_weights
    cells = GRID * GRID
    rows, cols = np.divmod(np.arange(cells), GRID)
    low, high = LOG_SIZE_LIMITS
    weights += [
        numpy_helper.from_array(np.array([0, cells, 5 + CLASSES], np.int64), "cells_shape"),
        numpy_helper.from_array(np.array([1, 2, 2, CLASSES], np.int64), "split_sizes"),
        numpy_helper.from_array(np.stack([cols, rows], 1).astype(np.float32), "cell_offsets"),
        numpy_helper.from_array(np.array(GRID, np.float32), "grid"),
        numpy_helper.from_array(np.array(ANCHOR, np.float32), "anchor"),
        numpy_helper.from_array(np.array(low, np.float32), "size_low"),
        numpy_helper.from_array(np.array(high, np.float32), "size_high"),
    ]
    nodes += [
        helper.make_node("Transpose", [features], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "cells_shape"], ["cells"]),
        helper.make_node("Split", ["cells", "split_sizes"], ["obj", "xy", "wh", "cls"], axis=2),
        helper.make_node("Sigmoid", ["obj"], ["objectness"]),
        helper.make_node("Softmax", ["cls"], ["class_probabilities"], axis=2),
        helper.make_node("Mul", ["objectness", "class_probabilities"], ["SCORES"]),
        helper.make_node("Sigmoid", ["xy"], ["xy_in_cell"]),
        helper.make_node("Add", ["xy_in_cell", "cell_offsets"], ["xy_cells"]),
        helper.make_node("Div", ["xy_cells", "grid"], ["centres"]),
        helper.make_node("Clip", ["wh", "size_low", "size_high"], ["wh_clipped"]),
        helper.make_node("Exp", ["wh_clipped"], ["wh_scale"]),
        helper.make_node("Mul", ["wh_scale", "anchor"], ["sizes"]),
        helper.make_node("Concat", ["centres", "sizes"], ["CANDIDATES"], axis=2),
    ]
    graph = helper.make_graph(
        nodes,
        "shapes-detector",
        [_pixels_input(DETECTOR_SIZE)],
        [
            helper.make_tensor_value_info("SCORES", TensorProto.FLOAT, ["batch", cells, CLASSES]),
            helper.make_tensor_value_info("CANDIDATES", TensorProto.FLOAT, ["batch", cells, 4]),
        ],
        initializer=weights,
    )
    _save(graph, path)


def _session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session: onnxruntime.InferenceSession, x: np.ndarray) -> list[np.ndarray]:
    return [
        np.concatenate(parts)
        for parts in zip(
            *(session.run(None, {"PIXELS": x[i : i + 256]}) for i in range(0, len(x), 256)),
            strict=True,
        )
    ]


# ---------------------------------------------------------------- evaluation


def _best_f1_threshold(confidences: np.ndarray, correct: np.ndarray, positives: int) -> float:
    """The confidence cut that maximises F1, the way the reference service picks its
    per-label "assumed threshold"; rounded down to 0.1 percent."""
    if positives == 0 or not correct.any():
        return 50.0
    order = np.argsort(-confidences, kind="stable")
    hits = np.cumsum(correct[order])
    precision = hits / np.arange(1, len(order) + 1)
    recall = hits / positives
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
    best = int(np.argmax(f1))
    cut = float(confidences[order][best])
    return max(postprocessing.CONFIDENCE_FLOOR, math.floor(cut * 10) / 10)


def _average_precision(confidences: np.ndarray, correct: np.ndarray, positives: int) -> float:
    """All-point interpolated AP (PASCAL VOC 2010+)."""
    if positives == 0:
        return float("nan")
    order = np.argsort(-confidences, kind="stable")
    hits = np.cumsum(correct[order])
    precision = np.concatenate([[1.0], hits / np.arange(1, len(order) + 1), [0.0]])
    recall = np.concatenate([[0.0], hits / positives, [hits[-1] / positives if len(hits) else 0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    overlap = width * height
    return overlap / (a[2] * a[3] + b[2] * b[3] - overlap)


def _match_detections(
    outputs: dict[str, np.ndarray], generated: list[scenes.Scene]
) -> tuple[dict[str, list[tuple[float, bool]]], dict[str, int], list[float]]:
    """Greedy matching at IoU 0.5 per image: per label (confidence, true positive), counts of
    true objects per label, and the IoU of each matched box."""
    found: dict[str, list[tuple[float, bool]]] = {name: [] for name in scenes.SHAPES}
    totals = dict.fromkeys(scenes.SHAPES, 0)
    ious: list[float] = []
    for i, scene in enumerate(generated):
        truth = [(o.label, (o.left, o.top, o.width, o.height)) for o in scene.objects]
        for label, _ in truth:
            totals[label] += 1
        used = [False] * len(truth)
        for name, confidence, box in zip(
            outputs[postprocessing.LABELS][i],
            outputs[postprocessing.CONFIDENCES][i],
            outputs[postprocessing.BOXES][i],
            strict=True,
        ):
            if not name:
                continue
            label = name.decode()
            candidates = [
                (_iou(tuple(box), tbox), j)
                for j, (tlabel, tbox) in enumerate(truth)
                if tlabel == label and not used[j]
            ]
            best_iou, best = max(candidates, default=(0.0, -1))
            hit = best_iou >= 0.5
            if hit:
                used[best] = True
                ious.append(best_iou)
            found[label].append((float(confidence), hit))
    return found, totals, ious


def _write_labels(directory: Path, thresholds: dict[str, float]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "labels.txt").write_text("".join(f"{name}\n" for name in scenes.SHAPES))
    (directory / "thresholds.json").write_text(json.dumps(thresholds, indent=2) + "\n")


def _uniform_labels() -> postprocessing.LabelSet:
    return postprocessing.LabelSet(names=scenes.SHAPES, thresholds=(50.0,) * CLASSES)


def _detect(scores: np.ndarray, candidates: np.ndarray) -> dict[str, np.ndarray]:
    """The served postprocessing: the anchors format, centre-size boxes in input ratios."""
    spec = Detection(
        format="anchors", boxes="CANDIDATES", scores="SCORES", box="cxcywh", units="normalised"
    )
    size = (DETECTOR_SIZE, DETECTOR_SIZE)
    items = postprocessing.candidates(
        {"SCORES": scores, "CANDIDATES": candidates}, spec, input_size=size, classes=CLASSES
    )
    # stretched: ratios of the input are ratios of any original image
    stretched = placement(Resize(), original=size, target=size)
    return postprocessing.detect(
        items, [stretched] * len(items), labels=_uniform_labels(), suppress=True
    )


def train_classifier(*, repository: Path, count: int, epochs: int) -> dict[str, object]:
    print("classifier: generating data", flush=True)
    pixels, generated = _images(
        "classification", seed=SEEDS["train"], count=count, size=CLASSIFIER_SIZE
    )
    labels = np.array([scenes.SHAPES.index(s.objects[0].label) for s in generated])
    x = contrast(pixels)
    model = Classifier(np.random.default_rng(10))
    _adam(
        model.params,
        lambda idx: model.loss(x[idx], labels[idx]),
        count=count,
        epochs=epochs,
        batch=32,
        rate=2e-3,
        seed=11,
    )
    _freeze(model.convs)
    path = repository / "shapes-classifier-onnx" / "1" / "model.onnx"
    export_classifier(model, path)
    session = _session(path)
    np.testing.assert_allclose(
        _run(session, pixels[:64])[0], _softmax(model.logits(x[:64])), atol=1e-4
    )

    def probabilities(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        xs, gen = _images("classification", seed=SEEDS[split], count=n, size=CLASSIFIER_SIZE)
        truth = np.array([scenes.SHAPES.index(s.objects[0].label) for s in gen])
        return _run(session, xs)[0], truth

    validation, vtruth = probabilities("validation", 1000)
    thresholds = {
        name: _best_f1_threshold(validation[:, k] * 100, vtruth == k, int((vtruth == k).sum()))
        for k, name in enumerate(scenes.SHAPES)
    }
    _write_labels(repository / "shapes-classifier-postprocess" / "1", thresholds)
    test, ttruth = probabilities("test", 2000)
    accuracy = float((test.argmax(axis=1) == ttruth).mean())
    return {"top1_accuracy": accuracy, "test_images": len(ttruth), "thresholds": thresholds}


def train_detector(*, repository: Path, count: int, epochs: int) -> dict[str, object]:
    print("detector: generating data", flush=True)
    pixels, generated = _images("detection", seed=SEEDS["train"], count=count, size=DETECTOR_SIZE)
    targets = _detector_targets(generated)
    x = contrast(pixels)
    model = Detector(np.random.default_rng(20))
    _adam(
        model.params,
        lambda idx: model.loss(x[idx], targets[idx]),
        count=count,
        epochs=epochs,
        batch=32,
        rate=2e-3,
        seed=21,
    )
    _freeze(model.convs)
    path = repository / "shapes-detector-onnx" / "1" / "model.onnx"
    export_detector(model, path)
    session = _session(path)
    raw = model.raw(x[:64]).reshape(64, GRID * GRID, -1)
    np.testing.assert_allclose(
        _run(session, pixels[:64])[0],
        _sigmoid(raw[..., :1]) * _softmax(raw[..., 5:]),
        atol=1e-4,
    )

    def matched(
        split: str, n: int
    ) -> tuple[dict[str, list[tuple[float, bool]]], dict[str, int], list[float]]:
        xs, gen = _images("detection", seed=SEEDS[split], count=n, size=DETECTOR_SIZE)
        scores, candidates = _run(session, xs)
        outputs = _detect(scores, candidates)
        return _match_detections(outputs, gen)

    found, totals, _ = matched("validation", 500)
    thresholds = {}
    for name in scenes.SHAPES:
        confidences = np.array([c for c, _ in found[name]])
        hits = np.array([h for _, h in found[name]], dtype=bool)
        thresholds[name] = _best_f1_threshold(confidences, hits, totals[name])
    _write_labels(repository / "shapes-detector-postprocess" / "1", thresholds)
    found, totals, ious = matched("test", 1000)
    aps = {
        name: _average_precision(
            np.array([c for c, _ in found[name]]),
            np.array([h for _, h in found[name]], dtype=bool),
            totals[name],
        )
        for name in scenes.SHAPES
    }
    kept = [
        (name, hit)
        for name in scenes.SHAPES
        for confidence, hit in found[name]
        if confidence >= thresholds[name]
    ]
    true_positives = sum(hit for _, hit in kept)
    return {
        "map50": float(np.mean(list(aps.values()))),
        "ap50": aps,
        "precision_at_thresholds": true_positives / max(len(kept), 1),
        "recall_at_thresholds": true_positives / sum(totals.values()),
        "mean_iou_of_matches": float(np.mean(ious)),
        "test_images": 1000,
        "test_objects": sum(totals.values()),
        "thresholds": thresholds,
    }


#: model -> (trainer, training images, epochs)
TRAINERS = {"classifier": (train_classifier, 8000, 10), "detector": (train_detector, 6000, 12)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(TRAINERS))
    parser.add_argument(
        "--repository", type=Path, default=DEFAULT_REPOSITORY, help="default: triton-models/"
    )
    parser.add_argument("--train-images", type=int, help="default: per model, see TRAINERS")
    parser.add_argument("--epochs", type=int, help="default: per model, see TRAINERS")
    args = parser.parse_args()
    results = {}
    started = time.monotonic()
    for name, (train, count, epochs) in TRAINERS.items():
        if args.only in (None, name):
            results[f"shapes-{name}"] = train(
                repository=args.repository,
                count=args.train_images or count,
                epochs=args.epochs or epochs,
            )
    print(json.dumps(results, indent=2))
    print(f"done in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
