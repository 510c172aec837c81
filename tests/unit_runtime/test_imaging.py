"""kiu.imaging: the decode/resize/postprocess code both runtimes share."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from kiu.imaging import postprocessing, preprocessing, scenes

LABELS = postprocessing.LabelSet(names=("circle", "square", "star"), thresholds=(40.0, 55.5, 70.0))


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_preprocess_resizes_to_float_chw(fmt: str) -> None:
    image = Image.new("RGB", (200, 120), (255, 0, 0))
    pixels = preprocessing.preprocess([_encode(image, fmt)] * 2, width=64, height=48)
    assert pixels.shape == (2, 3, 48, 64)
    assert pixels.dtype == np.float32
    assert np.allclose(pixels[:, 0], 1.0, atol=0.02)
    assert np.allclose(pixels[:, 1:], 0.0, atol=0.02)


def test_preprocess_converts_grey_and_alpha_to_rgb() -> None:
    grey = _encode(Image.new("L", (70, 70), 128), "PNG")
    rgba = _encode(Image.new("RGBA", (70, 70), (0, 0, 255, 10)), "PNG")
    pixels = preprocessing.preprocess([grey, rgba], width=32, height=32)
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
        preprocessing.preprocess([good, data], width=16, height=16)


def test_images_above_the_reference_size_limit_are_refused() -> None:
    huge = _encode(Image.new("L", (4097, 4097)), "PNG")
    with pytest.raises(preprocessing.InvalidImageError, match="at most 16777216 pixels"):
        preprocessing.preprocess([huge], width=16, height=16)


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


def test_detect_keeps_best_class_suppresses_overlaps_and_clips_boxes() -> None:
    out = postprocessing.detect(*_detection_inputs(), labels=LABELS)
    assert out[postprocessing.LABELS].tolist() == [[b"circle", b"square", b"star"]]
    assert np.allclose(out[postprocessing.CONFIDENCES], [[90, 70, 50]])
    assert np.allclose(out[postprocessing.THRESHOLDS], [[40, 55.5, 70]])
    assert np.allclose(
        out[postprocessing.BOXES],
        [[[0.2, 0.2, 0.2, 0.2], [0.85, 0.0, 0.15, 0.2], [0.2, 0.2, 0.2, 0.2]]],
    )


def test_detect_with_nothing_above_the_floor_returns_empty_rows() -> None:
    out = postprocessing.detect(
        np.full((2, 4, 3), 0.001, np.float32), np.zeros((2, 4, 4)), labels=LABELS
    )
    assert out[postprocessing.LABELS].shape == (2, 0)
    assert out[postprocessing.BOXES].shape == (2, 0, 4)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_detect_boxes_stay_inside_the_image_and_confidences_sorted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random((1, 36, 3)).astype(np.float32)
    boxes = (rng.random((1, 36, 4)) * 1.5 - 0.25).astype(np.float32)
    out = postprocessing.detect(scores, boxes, labels=LABELS)
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
