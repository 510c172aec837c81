"""The cpu runtime's model layer in-process: ensembles, request checks, dynamic batching."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from kiu.imaging import scenes
from kiu.imaging.preprocessing import InvalidImageError
from kiu.unit import models, repository
from kiu.unit.batcher import DynamicBatcher

from .expected import MODELS, REPOSITORY, check, images, summary


@pytest.fixture(scope="module")
def loaded() -> dict[str, models.Model]:
    return {name: models.load_model(REPOSITORY, name) for name in MODELS}


def _images(data: list[bytes]) -> dict[str, np.ndarray]:
    return {"IMAGE": np.array([[d] for d in data], dtype=np.object_)}


@pytest.mark.parametrize("name", MODELS)
def test_fixed_images_give_the_committed_results(
    loaded: dict[str, models.Model], name: str
) -> None:
    model = loaded[name]
    results = []
    for image in images(name):
        outputs = asyncio.run(model.infer(_images([image])))
        results.append(summary(outputs, 0))
    check(name, results)


def test_classifier_is_accurate_on_unseen_scenes(loaded: dict[str, models.Model]) -> None:
    generated = list(scenes.scenes("classification", seed=31337, count=60))
    outputs = asyncio.run(
        loaded["shapes-classifier"].infer(_images([s.image for s in generated[:8]]))
    )
    assert outputs["LABELS"].shape[0] == 8
    correct = 0
    for start in range(0, len(generated), 8):
        batch = generated[start : start + 8]
        outputs = asyncio.run(loaded["shapes-classifier"].infer(_images([s.image for s in batch])))
        correct += sum(
            outputs["LABELS"][i][0].decode() == scene.objects[0].label
            for i, scene in enumerate(batch)
        )
    assert correct / len(generated) >= 0.9


def test_detector_finds_unseen_shapes_above_their_default_thresholds(
    loaded: dict[str, models.Model],
) -> None:
    generated = list(scenes.scenes("detection", seed=31337, count=24))
    found = total = 0
    for scene in generated:
        outputs = asyncio.run(loaded["shapes-detector"].infer(_images([scene.image])))
        kept = [
            (label.decode(), box)
            for label, confidence, threshold, box in zip(
                *(outputs[k][0] for k in ("LABELS", "CONFIDENCES", "THRESHOLDS", "BOXES")),
                strict=True,
            )
            if label and confidence >= threshold
        ]
        for obj in scene.objects:
            total += 1
            centre = (obj.left + obj.width / 2, obj.top + obj.height / 2)
            found += any(
                label == obj.label
                and box[0] <= centre[0] <= box[0] + box[2]
                and box[1] <= centre[1] <= box[1] + box[3]
                for label, box in kept
            )
    assert found / total >= 0.8


def test_metadata_follows_the_ensemble_config(loaded: dict[str, models.Model]) -> None:
    detector = loaded["shapes-detector"]
    assert detector.platform == "ensemble"
    assert detector.max_batch_size == 8
    assert [(s.name, s.datatype, s.shape(batched=True)) for s in detector.inputs] == [
        ("IMAGE", "BYTES", [-1, 1])
    ]
    assert [(s.name, s.datatype, s.shape(batched=True)) for s in detector.outputs] == [
        ("LABELS", "BYTES", [-1, -1]),
        ("CONFIDENCES", "FP32", [-1, -1]),
        ("THRESHOLDS", "FP32", [-1, -1]),
        ("BOXES", "FP32", [-1, -1, 4]),
    ]


@pytest.mark.parametrize(
    ("provided", "message"),
    [
        ({}, r"takes inputs \['IMAGE'\], got \[\]"),
        ({"IMAGE": ("FP32", [1, 1])}, "must be BYTES, got FP32"),
        ({"IMAGE": ("BYTES", [1])}, r"must have shape \[-1, 1\], got \[1\]"),
        ({"IMAGE": ("BYTES", [1, 2])}, r"must have shape \[-1, 1\], got \[1, 2\]"),
        ({"IMAGE": ("BYTES", [9, 1])}, r"batch size 9 is outside 1..8"),
        ({"IMAGE": ("BYTES", [0, 1])}, r"batch size 0 is outside 1..8"),
        ({"IMAGE": ("BYTES", [1, 1]), "EXTRA": ("FP32", [1])}, "takes inputs"),
    ],
)
def test_requests_that_do_not_fit_the_inputs_are_refused(
    loaded: dict[str, models.Model], provided: dict[str, tuple[str, list[int]]], message: str
) -> None:
    with pytest.raises(models.RequestError, match=message):
        loaded["shapes-classifier"].check(provided)


def test_a_bad_image_fails_its_request_only(loaded: dict[str, models.Model]) -> None:
    model = loaded["shapes-classifier"]
    with pytest.raises(InvalidImageError, match="item 1: not a PNG or JPEG image"):
        asyncio.run(model.infer(_images([images("shapes-classifier")[0], b"GIF89a"])))
    outputs = asyncio.run(model.infer(_images(images("shapes-classifier")[:1])))
    assert outputs["LABELS"].shape[0] == 1


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    sizes: list[int] = []
    lock = threading.Lock()

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 10}

    async def scenario() -> list[np.ndarray]:
        batcher = DynamicBatcher(run, max_batch_size=8, delay=0.05)
        requests = [np.full((n, 2), i, np.float32) for i, n in enumerate((1, 2, 3, 4, 1))]
        results = await asyncio.gather(*(batcher.submit({"x": r}) for r in requests))
        return [result["y"] for result in results]

    results = asyncio.run(scenario())
    assert [r.shape[0] for r in results] == [1, 2, 3, 4, 1]
    assert all((r == i * 10).all() for i, r in enumerate(results))
    assert sum(sizes) == 11
    assert max(sizes) <= 8
    assert len(sizes) == 2  # 1+2+3 waited together; 4 would overflow 8, so 4+1 ran next


def test_a_failing_batch_fails_each_of_its_requests() -> None:
    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("model crashed")

    async def scenario() -> list[BaseException | dict[str, np.ndarray]]:
        batcher = DynamicBatcher(run, max_batch_size=4, delay=0.01)
        ones = [batcher.submit({"x": np.ones((1, 1))}) for _ in range(3)]
        return await asyncio.gather(*ones, return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(scenario()))


def test_unsupported_models_and_steps_are_reported(tmp_path: Path) -> None:
    shutil.copytree(REPOSITORY / "shapes-classifier-onnx", tmp_path / "torch-model")
    config = tmp_path / "torch-model" / "config.pbtxt"
    config.write_text(
        config.read_text()
        .replace('"shapes-classifier-onnx"', '"torch-model"')
        .replace('backend: "onnxruntime"', 'backend: "pytorch"')
    )
    with pytest.raises(repository.RepositoryError, match="not platform '' / backend 'pytorch'"):
        models.load_model(tmp_path, "torch-model")
    with pytest.raises(repository.RepositoryError, match="no model 'absent'"):
        models.load_model(tmp_path, "absent")
    shutil.copytree(REPOSITORY / "shapes-classifier-preprocess", tmp_path / "odd-step")
    config = tmp_path / "odd-step" / "config.pbtxt"
    config.write_text(
        config.read_text()
        .replace('"shapes-classifier-preprocess"', '"odd-step"')
        .replace('string_value: "preprocess"', 'string_value: "sharpen"')
    )
    with pytest.raises(ValueError, match=r"unknown kiu\.step parameter 'sharpen'"):
        models.load_model(tmp_path, "odd-step")
