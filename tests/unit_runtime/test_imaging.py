"""kiu.imaging: the decode/resize/postprocess code both runtimes share."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from kiu.contract import Classification, Contract, Detection, Input, Resize, placement
from kiu.imaging import postprocessing, preprocessing, scenes

LABELS = postprocessing.LabelSet(names=("circle", "square", "star"), thresholds=(40.0, 55.5, 70.0))
ANCHORS = Detection(
    format="anchors", boxes="BOXES", scores="SCORES", box="cxcywh", units="normalised"
)


def _contract(width: int, height: int, **changes: object) -> Contract:
    fields: dict[str, object] = {
        "task": "classification",
        "input": Input("PIXELS", width=width, height=height),
        "output": Classification("SCORES"),
        "scale": 1 / 255,
        **changes,
    }
    return Contract(**fields)  # type: ignore[arg-type]


def _preprocess(images: list[bytes], width: int, height: int, **changes: object) -> np.ndarray:
    pixels, _ = preprocessing.preprocess(images, _contract(width, height, **changes))
    return pixels


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_preprocess_resizes_to_float_chw(fmt: str) -> None:
    image = Image.new("RGB", (200, 120), (255, 0, 0))
    pixels, sizes = preprocessing.preprocess([_encode(image, fmt)] * 2, _contract(64, 48))
    assert sizes.tolist() == [[200, 120], [200, 120]]
    assert pixels.shape == (2, 3, 48, 64)
    assert pixels.dtype == np.float32
    assert np.allclose(pixels[:, 0], 1.0, atol=0.02)
    assert np.allclose(pixels[:, 1:], 0.0, atol=0.02)


def test_preprocess_converts_grey_and_alpha_to_rgb() -> None:
    grey = _encode(Image.new("L", (70, 70), 128), "PNG")
    rgba = _encode(Image.new("RGBA", (70, 70), (0, 0, 255, 10)), "PNG")
    pixels = _preprocess([grey, rgba], 32, 32)
    assert pixels.shape == (2, 3, 32, 32)
    assert np.allclose(pixels[0], 128 / 255, atol=1e-6)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image"),
        (b"definitely not an image", "not a PNG or JPEG image"),
        (_encode(Image.new("RGB", (8, 8)), "GIF"), "not a PNG or JPEG image"),
        (_encode(Image.new("RGB", (80, 80)), "PNG")[:60], "corrupt image"),
    ],
)
def test_bad_images_are_caller_errors_naming_the_item(data: bytes, message: str) -> None:
    good = _encode(Image.new("RGB", (80, 80)), "PNG")
    with pytest.raises(preprocessing.InvalidImageError, match=f"item 1: {message}"):
        _preprocess([good, data], 16, 16)


def test_images_above_the_reference_size_limit_are_refused() -> None:
    huge = _encode(Image.new("L", (4097, 4097)), "PNG")
    with pytest.raises(preprocessing.InvalidImageError, match="at most 16777216 pixels"):
        _preprocess([huge], 16, 16)


def test_classify_ranks_names_and_thresholds_every_label_above_the_floor() -> None:
    probabilities = np.array([[0.2, 0.795, 0.005], [0.6, 0.1, 0.3]], dtype=np.float32)
    out = postprocessing.classify(probabilities, labels=LABELS)
    assert out[postprocessing.LABELS].tolist() == [
        [b"square", b"circle", b""],
        [b"circle", b"star", b"square"],
    ]
    assert np.allclose(out[postprocessing.CONFIDENCES], [[79.5, 20.0, 0.0], [60, 30, 10]])
    # padding: confidence 0 and threshold 100, which no caller keeps
    assert np.allclose(out[postprocessing.THRESHOLDS], [[55.5, 40, 100], [40, 70, 55.5]])
    assert postprocessing.BOXES not in out


def test_classify_applies_the_declared_activation_and_top_k() -> None:
    logits = np.array([[2.0, 0.5, -1.0]], dtype=np.float32)
    exp = np.exp(logits[0].astype(np.float64))
    out = postprocessing.classify(logits, labels=LABELS, activation="softmax", top_k=2)
    assert out[postprocessing.LABELS].tolist() == [[b"circle", b"square"]]
    assert np.allclose(out[postprocessing.CONFIDENCES], [100 * exp[:2] / exp.sum()])
    out = postprocessing.classify(logits, labels=LABELS, activation="sigmoid")
    assert np.allclose(out[postprocessing.CONFIDENCES], [100 / (1 + np.exp(-logits[0]))])


def test_classify_rejects_a_label_file_of_another_model() -> None:
    with pytest.raises(ValueError, match="model gives 2 classes, the label file names 3"):
        postprocessing.classify(np.ones((1, 2), np.float32), labels=LABELS)


def _detection_inputs() -> tuple[np.ndarray, np.ndarray]:
    scores = np.zeros((1, 4, 3), np.float32)
    boxes = np.zeros((1, 4, 4), np.float32)
    scores[0, 0] = (0.9, 0.05, 0.0)  # a circle
    boxes[0, 0] = (0.30, 0.30, 0.20, 0.20)
    scores[0, 1] = (0.6, 0.0, 0.1)  # the same circle again, weaker: suppressed
    boxes[0, 1] = (0.31, 0.31, 0.20, 0.20)
    scores[0, 2] = (0.0, 0.0, 0.5)  # a star over the circle: another label, kept
    boxes[0, 2] = (0.30, 0.30, 0.20, 0.20)
    scores[0, 3] = (0.0, 0.7, 0.0)  # a square over the edge: clipped
    boxes[0, 3] = (0.95, 0.05, 0.2, 0.3)
    return scores, boxes


def _detect(scores: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
    """The anchors format with boxes as ratios of a stretched input."""
    items = postprocessing.candidates(
        {"SCORES": scores, "BOXES": boxes}, ANCHORS, input_size=(10, 10), classes=3
    )
    stretched = placement(Resize(), original=(50, 30), target=(10, 10))
    return postprocessing.detect(items, [stretched] * len(items), labels=LABELS, suppress=True)


def test_detect_keeps_best_class_suppresses_overlaps_and_clips_boxes() -> None:
    out = _detect(*_detection_inputs())
    assert out[postprocessing.LABELS].tolist() == [[b"circle", b"square", b"star"]]
    assert np.allclose(out[postprocessing.CONFIDENCES], [[90, 70, 50]])
    assert np.allclose(out[postprocessing.THRESHOLDS], [[40, 55.5, 70]])
    assert np.allclose(
        out[postprocessing.BOXES],
        [[[0.2, 0.2, 0.2, 0.2], [0.85, 0.0, 0.15, 0.2], [0.2, 0.2, 0.2, 0.2]]],
    )


def test_detect_with_nothing_above_the_floor_returns_empty_rows() -> None:
    out = _detect(np.full((2, 4, 3), 0.001, np.float32), np.zeros((2, 4, 4)))
    assert out[postprocessing.LABELS].shape == (2, 0)
    assert out[postprocessing.BOXES].shape == (2, 0, 4)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_detect_boxes_stay_inside_the_image_and_confidences_sorted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random((1, 36, 3)).astype(np.float32)
    boxes = (rng.random((1, 36, 4)) * 1.5 - 0.25).astype(np.float32)
    out = _detect(scores, boxes)
    ltwh = out[postprocessing.BOXES][0]
    assert (ltwh >= 0).all()
    assert (ltwh[:, 0] + ltwh[:, 2] <= 1 + 1e-6).all()
    assert (ltwh[:, 1] + ltwh[:, 3] <= 1 + 1e-6).all()
    confidences = out[postprocessing.CONFIDENCES][0]
    assert (np.diff(confidences) <= 0).all()
    assert (confidences >= postprocessing.CONFIDENCE_FLOOR).all()


def test_label_set_needs_a_threshold_for_every_label() -> None:
    parsed = postprocessing.LabelSet.parse(
        labels="circle\nsquare\n\n", thresholds=json.dumps({"square": 2, "circle": 1.5})
    )
    assert parsed == postprocessing.LabelSet(names=("circle", "square"), thresholds=(1.5, 2.0))
    with pytest.raises(ValueError, match=r"no default threshold for labels \['square'\]"):
        postprocessing.LabelSet.parse(labels="circle\nsquare", thresholds='{"circle": 1}')


@pytest.mark.parametrize("kind", ["classification", "detection"])
def test_scenes_are_deterministic_and_their_boxes_are_ratios(kind: scenes.Kind) -> None:
    first = list(scenes.scenes(kind, seed=42, count=5))
    assert first == list(scenes.scenes(kind, seed=42, count=5))
    assert first != list(scenes.scenes(kind, seed=43, count=5))
    for scene in first:
        assert scene.objects
        image = Image.open(io.BytesIO(scene.image))
        assert image.format == scene.format
        assert image.size == (scene.width, scene.height)
        for obj in scene.objects:
            assert obj.label in scenes.SHAPES
            assert obj.left >= 0
            assert obj.left + obj.width <= 1 + 1e-9
            assert obj.top >= 0
            assert obj.top + obj.height <= 1 + 1e-9
    if kind == "classification":
        assert all(len(scene.objects) == 1 for scene in first)


def test_letterbox_pads_and_orders_colours_as_declared() -> None:
    image = Image.new("RGB", (40, 20), (200, 100, 50))
    pixels = _preprocess(
        [_encode(image, "PNG")],
        20,
        20,
        input=Input("PIXELS", layout="NHWC", dtype="uint8", width=20, height=20),
        resize=Resize("letterbox", pad=7),
        colour="BGR",
        scale=1.0,
    )
    assert pixels.shape == (1, 20, 20, 3)
    assert pixels.dtype == np.uint8
    # 40x20 -> 20x10 placed at (0, 5): five padded rows above and below
    assert (pixels[0, :5] == 7).all()
    assert (pixels[0, 15:] == 7).all()
    assert (pixels[0, 5:15] == (50, 100, 200)).all()


def test_mean_std_float16_and_grey_inputs() -> None:
    red = _encode(Image.new("RGB", (8, 8), (255, 0, 0)), "PNG")
    pixels = _preprocess(
        [red],
        8,
        8,
        input=Input("PIXELS", dtype="float16", width=8, height=8),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    assert pixels.dtype == np.float16
    assert np.allclose(pixels[0, 0], 1.0)
    assert np.allclose(pixels[0, 1:], -1.0)
    grey = _preprocess([red], 8, 8, input=Input("PIXELS", channels=1, width=8, height=8))
    assert grey.shape == (1, 1, 8, 8)
    assert np.allclose(grey, 76 / 255, atol=1 / 255)  # ITU-R 601 luma of pure red


def _letterboxed(output: Detection, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Detections of a 20x20 input letterboxed from a 40x20 image (resized 20x10 at (0, 5))."""
    items = postprocessing.candidates(outputs, output, input_size=(20, 20), classes=3)
    place = placement(Resize("letterbox"), original=(40, 20), target=(20, 20))
    return postprocessing.detect(
        items, [place] * len(items), labels=LABELS, suppress=output.suppresses
    )


def test_yolov8_heads_are_channels_first_and_suppressed_by_class() -> None:
    head = np.zeros((1, 7, 3), np.float32)
    head[0, :, 0] = (10, 10, 4, 4, 0.1, 0.8, 0.05)  # a square at the centre
    head[0, :, 1] = (10.2, 10, 4, 4, 0.0, 0.5, 0.0)  # the same square, weaker: suppressed
    head[0, :, 2] = (10, 10, 4, 4, 0.6, 0.0, 0.0)  # a circle in the same place: kept
    out = _letterboxed(Detection("yolov8", tensor="out"), {"out": head})
    assert out[postprocessing.LABELS].tolist() == [[b"square", b"circle"]]
    assert np.allclose(out[postprocessing.CONFIDENCES], [[80, 60]])
    assert np.allclose(out[postprocessing.BOXES][0, 0], [0.4, 0.3, 0.2, 0.4])


def test_yolov5_heads_multiply_objectness_by_class_score() -> None:
    head = np.zeros((1, 1, 8), np.float32)
    head[0, 0] = (10, 10, 4, 4, 0.5, 0.2, 0.9, 0.0)
    out = _letterboxed(Detection("yolov5", tensor="out"), {"out": head})
    assert out[postprocessing.LABELS].tolist() == [[b"square"]]
    assert np.allclose(out[postprocessing.CONFIDENCES], [[45]])


def test_post_processed_boxes_honour_count_and_skip_suppression() -> None:
    output = Detection(
        "boxes", boxes="b", scores="s", classes="c", count="n", box="xywh", units="normalised"
    )
    outputs = {
        "b": np.array([[[0.1, 0.3, 0.2, 0.4], [0.1, 0.3, 0.2, 0.4], [0, 0, 1, 1]]], np.float32),
        "s": np.array([[0.7, 0.6, 0.9]], np.float32),
        "c": np.array([[2, 2, 0]], np.float32),
        "n": np.array([2], np.int32),
    }
    out = _letterboxed(output, outputs)
    assert out[postprocessing.LABELS].tolist() == [[b"star", b"star"]]
    assert np.allclose(out[postprocessing.BOXES][0, 0], [0.1, 0.1, 0.2, 0.8])
    outputs["c"] = np.array([[3, 0, 0]], np.float32)
    with pytest.raises(ValueError, match="model gives class 3, the label file names 3 classes"):
        _letterboxed(output, outputs)


def test_a_head_with_the_wrong_class_count_is_refused() -> None:
    with pytest.raises(ValueError, match="model gives 4 classes, the label file names 3"):
        _letterboxed(Detection("yolov8", tensor="out"), {"out": np.zeros((1, 8, 5), np.float32)})
