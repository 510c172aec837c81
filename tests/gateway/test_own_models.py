"""Users' own ONNX models, imported with `kiu model import`, served by real `kiu unit`
processes behind a real gateway and called with boto3: the answers equal an independent
reference (labels exact, confidences within 0.01 points, boxes within 0.001)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiu.unit import importer

from ..unit_runtime.own_models import (
    OwnModel,
    build,
    expected,
    import_flags,
    metadata_labels,
    photo,
)
from . import processes
from .conftest import arn, directory, rekognition, version, write

IMAGENET = {"scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
FIVE = ["tabby", "tiger", "lynx", "puma", "ocelot"]
THREE = ["person", "bicycle", "car"]

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
            "--format",
            "boxes",
            "--boxes",
            "boxes",
            "--scores",
            "scores",
            "--classes",
            "classes",
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
            "--format",
            "boxes",
            "--boxes",
            "boxes",
            "--scores",
            "scores",
            "--classes",
            "classes",
            "--box",
            "xywh",
            "--units",
            "normalised",
            "--interpolation",
            "bicubic",
        ],
    ),
]
#: Photo-like sizes: landscape, portrait, small and odd.
IMAGES = [photo(640, 480, seed=1), photo(333, 500, seed=2), photo(131, 64, seed=3)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """Every model imported into one repository, a unit each, one gateway; the source
    models stay in `work` for the reference."""
    work = tmp_path_factory.mktemp("own-models")
    repository = work / "repository"
    for model in MODELS:
        path = work / f"{model.name}.onnx"
        build(model, path)
        code = importer.main(
            [
                "import",
                *import_flags(model, path, work / f"{model.name}.txt", repository / model.name),
            ]
        )
        assert code == 0, model.name
    logs = work / "logs"
    logs.mkdir()
    specs = [(model.name, "a") for model in MODELS]
    with processes.units(specs, logs, repository=repository) as units:
        content = directory(
            [
                version(
                    model.name,
                    units=[],
                    model=model.name,
                    task="ObjectDetection"
                    if model.task == "object-detection"
                    else "Classification",
                )
                for model in MODELS
            ]
        )
        for entry, unit in zip(content["projectVersions"], units, strict=True):
            entry["units"] = [unit.entry()]
        write(logs / "directory.yaml", content)
        with processes.gateway(logs / "directory.yaml", logs) as gw:
            yield gw.port, work


def _matches(got: dict[str, Any], want: dict[str, Any]) -> bool:
    if got["Name"] != want["Name"] or abs(got["Confidence"] - want["Confidence"]) > 0.01:
        return False
    if "Geometry" not in want:
        return "Geometry" not in got
    box, want_box = got["Geometry"]["BoundingBox"], want["Geometry"]["BoundingBox"]
    return all(abs(box[key] - want_box[key]) <= 0.001 for key in want_box)


def _compare(got: list[dict[str, Any]], want: list[dict[str, Any]], where: str) -> None:
    """Same results, best first. Results whose confidences differ by less than the
    tolerance may come in either order, so each wanted one is matched to one answered."""
    confidences = [g["Confidence"] for g in got]
    assert confidences == sorted(confidences, reverse=True), where
    assert len(got) == len(want), (where, got, want)
    unmatched = list(got)
    for position, entry in enumerate(want):
        found = next((g for g in unmatched if _matches(g, entry)), None)
        assert found is not None, (where, position, entry, got[position])
        # in the same place, up to an exchange with a result of (almost) equal confidence
        assert abs(got[position]["Confidence"] - entry["Confidence"]) <= 0.01, where
        unmatched.remove(found)


@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_own_model_answers_equal_the_reference(served: tuple[int, Path], model: OwnModel) -> None:
    port, work = served
    client = rekognition(port)
    answered = 0
    for index, image in enumerate(IMAGES):
        want = expected(model, work / f"{model.name}.onnx", image)
        got = client.detect_custom_labels(
            ProjectVersionArn=arn(model.name), Image={"Bytes": image}, MinConfidence=0
        )["CustomLabels"]
        _compare(got, want, f"{model.name} image {index}")
        answered += len(want)
    assert answered > 0, "a model that finds nothing proves nothing"
