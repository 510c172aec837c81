"""kiu.contract: parsing a declared model contract and the geometry decisions it makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kiu.contract import (
    Classification,
    Contract,
    ContractError,
    Detection,
    Input,
    Resize,
    placement,
)

REPOSITORY = Path(__file__).resolve().parents[2] / "triton-models"


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "task": "classification",
        "input": {"name": "input", "width": 224, "height": 224},
        "resize": {"mode": "shorter-side", "size": 256},
        "scale": 1 / 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "output": {"tensor": "logits", "activation": "softmax", "top_k": 5},
    }
    document.update(changes)
    return document


def test_an_imagenet_contract_parses_with_defaults_and_round_trips() -> None:
    contract = Contract.parse(json.dumps(_document()))
    assert contract.input == Input("input", "NCHW", "float32", 3, 224, 224)
    assert contract.resize == Resize("shorter-side", 256, 114, "bilinear")
    assert contract.colour == "RGB"
    assert contract.output == Classification("logits", "softmax", 5)
    assert contract.labels is None
    assert Contract.parse(contract.dump()) == contract


def test_the_bundled_models_are_contracts() -> None:
    for model in ("shapes-classifier", "shapes-detector"):
        texts = {
            (REPOSITORY / f"{model}-{step}" / "1" / "contract.json").read_text()
            for step in ("preprocess", "postprocess")
        }
        assert len(texts) == 1, "both steps of a model read the same contract"
        contract = Contract.parse(texts.pop())
        assert contract.resize.mode == "stretch"
    detector = Contract.parse(
        (REPOSITORY / "shapes-detector-postprocess" / "1" / "contract.json").read_text()
    )
    assert detector.output == Detection(
        format="anchors", boxes="CANDIDATES", scores="SCORES", box="cxcywh", units="normalised"
    )
    assert detector.output.tensors == ("CANDIDATES", "SCORES")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "RGBA"}, "colour must be one of RGB, BGR, not 'RGBA'"),
        ({"inputs": {}}, "unknown key inputs"),
        (
            {"input": {"name": "x", "width": 8, "height": 8, "layout": "CHW"}},
            "input.layout must be one of NCHW, NHWC",
        ),
        ({"input": {"name": "x", "width": 0, "height": 8}}, "input.width must be an integer >= 1"),
        (
            {"input": {"name": "x", "width": 8, "height": 8, "channels": 4}},
            "input.channels must be 1 or 3",
        ),
        ({"input": {"width": 8, "height": 8}}, "input.name must name"),
        ({"mean": [1, 2]}, "mean has 2 values; the input has 3 channels"),
        ({"std": [0]}, "std must not contain 0"),
        ({"resize": {"mode": "shorter-side", "size": 200}}, "resize.size 200 is smaller"),
        ({"resize": {"mode": "letterbox", "pad": 300}}, "resize.pad must be a grey level"),
        (
            {"input": {"name": "x", "width": 8, "height": 8, "dtype": "uint8"}},
            "input.dtype uint8 takes raw pixels",
        ),
        ({"output": {"activation": "softmax"}}, "output.tensor must name a model output"),
        ({"output": {"tensor": "y", "activation": "relu"}}, "output.activation must be one of"),
        ({"labels": ["a", "a"]}, "labels must be unique"),
        ({"task": "segmentation"}, "task must be one of classification, object_detection"),
    ],
)
def test_invalid_contracts_name_the_key_and_the_choices(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ContractError, match=message):
        Contract.from_dict(_document(**changes))


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"format": "yolov8"}, "output.tensor must name"),
        ({"format": "yolov8", "tensor": "y", "units": "normalised"}, "writes cxcywh boxes"),
        ({"format": "anchors", "boxes": "b"}, "output.scores must name"),
        (
            {"format": "anchors", "boxes": "b", "scores": "s", "count": "n"},
            "output.count does not apply to format 'anchors'",
        ),
        (
            {"format": "boxes", "boxes": "b", "scores": "s", "classes": "c", "iou": 0},
            r"output.iou must be in \(0, 1\]",
        ),
        ({"format": "ssd"}, "output.format must be one of yolov8, yolov5, anchors, boxes"),
    ],
)
def test_invalid_detection_outputs_are_refused(output: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        Contract.from_dict(_document(task="object_detection", output=output))


def test_detection_formats_read_their_tensors() -> None:
    post = Contract.from_dict(
        _document(
            task="object_detection",
            output={"format": "boxes", "boxes": "b", "scores": "s", "classes": "c", "count": "n"},
        )
    ).output
    assert isinstance(post, Detection)
    assert post.tensors == ("b", "s", "c", "n")
    assert (post.box, post.units, post.suppresses) == ("xyxy", "pixels", False)


def test_not_json_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match=r"contract\.json is not JSON"):
        Contract.parse("{task: classification")


def test_stretch_fills_the_input() -> None:
    place = placement(Resize("stretch"), original=(640, 480), target=(224, 224))
    assert (place.resized, place.offset) == ((224, 224), (0, 0))
    assert place.to_ratios(112, 56) == (0.5, 0.25)


def test_shorter_side_then_centre_crop_is_the_imagenet_recipe() -> None:
    place = placement(Resize("shorter-side", 256), original=(640, 480), target=(224, 224))
    # 480 -> 256, 640 -> int(256 * 640 / 480) = 341; crop (341 - 224) // 2 = 58 and 16
    assert (place.resized, place.offset) == ((341, 256), (-58, -16))
    x, y = place.to_ratios(0, 224)
    assert x == pytest.approx(58 / 341)
    assert y == pytest.approx(240 / 256)
    tall = placement(Resize("shorter-side", 256), original=(300, 600), target=(224, 224))
    assert tall.resized == (256, 512)


def test_letterbox_keeps_the_aspect_and_pads_centred() -> None:
    place = placement(Resize("letterbox"), original=(640, 480), target=(320, 320))
    assert (place.resized, place.offset) == ((320, 240), (0, 40))
    assert place.to_ratios(320, 280) == (1.0, 1.0)
    assert place.to_ratios(0, 40) == (0.0, 0.0)
    narrow = placement(Resize("letterbox"), original=(101, 400), target=(64, 64))
    assert narrow.resized == (16, 64)
    assert narrow.offset == (24, 0)
