"""`kiu model import`: what it writes, and the models it refuses with a message naming the fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from kiu.contract import Contract
from kiu.unit import importer

from .own_models import OwnModel, build, metadata_labels


def _graph(
    path: Path, image: list[int | str], output: list[int | str], *, cast: bool = False
) -> None:
    """An input of the given shape whose values reach an output of the given shape."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0)]
    nodes += [
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["zeros"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
        ),
        helper.make_node("Add", ["zeros", "mean"], ["out"]),
    ]
    concrete = [d if isinstance(d, int) else 1 for d in output]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, image)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, output)],
        [helper.make_tensor("shape", TensorProto.INT64, [len(concrete)], concrete)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))


def _import(tmp_path: Path, model: Path, *flags: str) -> int:
    return importer.main(["import", str(model), "--out", str(tmp_path / "repo" / "mine"), *flags])


def _labels(tmp_path: Path, count: int) -> str:
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"class{k}\n" for k in range(count)))
    return str(path)


CLASSIFY = ["--task", "classification", "--preset", "imagenet"]
DETECT = ["--task", "object-detection"]


@pytest.mark.parametrize(
    ("image", "output", "flags", "message"),
    [
        (["N", 784], ["N", 10], CLASSIFY, "input 'image' has rank 2; kiu feeds images"),
        (["N", 4, 32, 32], ["N", 10], CLASSIFY, "has 4 channels in NCHW; kiu feeds 1 .grey. or 3"),
        (["N", 3, 32, 32], ["N", 10, 2], CLASSIFY,
         r"a classifier gives \[N, classes\]: use --task object-detection"),
        (["N", 3, 32, 32], ["N", 9], CLASSIFY,
         "gives 9 classes but there are 10 labels: pass --labels"),
        (["N", 3, "H", "W"], ["N", 10], CLASSIFY, "has a dynamic size: pass --size WIDTHxHEIGHT"),
        (["N", 3, 32, 32], ["N", 10, 7], [*DETECT, "--preset", "yolo"],
         r"fits neither \[N, 4\+C, A\] nor \[N, A, 5\+C\] with C = 10 labels"),
        (["N", 3, 32, 32], ["N", 10], [*DETECT, "--preset", "raw"],
         "name the detection output format with --format"),
    ],
)  # fmt: skip
def test_unmappable_models_are_refused_naming_the_fix(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    image: list[int | str],
    output: list[int | str],
    flags: list[str],
    message: str,
) -> None:
    model = tmp_path / "model.onnx"
    _graph(model, image, output)
    code = _import(tmp_path, model, "--labels", _labels(tmp_path, 10), *flags)
    assert code == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "repo" / "mine").exists()


def test_a_model_without_class_names_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.onnx"
    _graph(model, ["N", 3, 32, 32], ["N", 10])
    code = _import(tmp_path, model, "--task", "classification", "--preset", "imagenet")
    assert code == 1
    assert "no class names: pass --labels FILE" in capsys.readouterr().err


def test_import_writes_a_repository_and_prints_signature_and_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = ["person", "bicycle", "car"]
    own = OwnModel(
        "v8",
        "object-detection",
        labels,
        dynamic=True,
        head="yolov8",
        metadata=metadata_labels(labels, key="names"),
    )
    build(own, tmp_path / "model.onnx")
    yolo = [*DETECT, "--preset", "yolo", "--size", "64x64"]
    code = _import(tmp_path, tmp_path / "model.onnx", *yolo, "--threshold", "35")
    assert code == 0
    out = capsys.readouterr().out
    assert "input  image: float32 [?, 3, ?, ?]" in out
    assert "output head: float32 [?, 7, ?]" in out
    assert '"format": "yolov8"' in out
    repo = tmp_path / "repo"
    assert sorted(p.name for p in repo.iterdir()) == [
        "mine",
        "mine-onnx",
        "mine-postprocess",
        "mine-preprocess",
    ]
    contract = Contract.parse((repo / "mine-preprocess" / "1" / "contract.json").read_text())
    assert (contract.resize.mode, contract.resize.pad, contract.scale) == (
        "letterbox",
        114,
        1 / 255,
    )
    assert (contract.input.width, contract.input.height) == (64, 64)
    post = repo / "mine-postprocess" / "1"
    assert (post / "labels.txt").read_text().split() == labels
    assert json.loads((post / "thresholds.json").read_text()) == dict.fromkeys(labels, 35.0)
    assert 'string_value: "object_detection"' in (repo / "mine" / "config.pbtxt").read_text()
    # a second import onto the same name refuses instead of overwriting
    assert _import(tmp_path, tmp_path / "model.onnx", *yolo) == 1
    assert "already has" in capsys.readouterr().err
