"""kiu.unit.steps: a step is built from its config and contract, or fails at load saying why."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kiu.contract import ContractError
from kiu.unit.repository import config_json, read_config
from kiu.unit.steps import load_step

from .expected import REPOSITORY


def _copy(tmp_path: Path, name: str) -> tuple[dict[str, object], Path]:
    shutil.copytree(REPOSITORY / name, tmp_path / name)
    return config_json(read_config(tmp_path, name)), tmp_path / name / "1"


def _edit_contract(directory: Path, **changes: object) -> None:
    path = directory / "contract.json"
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def test_a_missing_contract_is_named(tmp_path: Path) -> None:
    config, directory = _copy(tmp_path, "shapes-classifier-preprocess")
    (directory / "contract.json").unlink()
    with pytest.raises(ContractError, match=r"missing .*contract\.json"):
        load_step(config, directory)


def test_a_contract_error_names_the_file_and_the_key(tmp_path: Path) -> None:
    config, directory = _copy(tmp_path, "shapes-classifier-preprocess")
    _edit_contract(directory, colour="CMYK")
    with pytest.raises(ContractError, match=r"contract\.json: colour must be one of RGB, BGR"):
        load_step(config, directory)


def test_preprocess_dims_must_match_the_contract(tmp_path: Path) -> None:
    config, directory = _copy(tmp_path, "shapes-detector-preprocess")
    _edit_contract(directory, input={"name": "PIXELS", "layout": "NHWC", "width": 96, "height": 96})
    with pytest.raises(ContractError, match=r"has dims \[3, 96, 96\]; .* gives \[96, 96, 3\]"):
        load_step(config, directory)


def test_postprocess_needs_the_tensors_the_contract_reads(tmp_path: Path) -> None:
    config, directory = _copy(tmp_path, "shapes-classifier-postprocess")
    _edit_contract(directory, output={"tensor": "LOGITS", "activation": "softmax"})
    with pytest.raises(ContractError, match=r"the contract reads inputs \['LOGITS'\]"):
        load_step(config, directory)


def test_labels_without_thresholds_fail_at_load(tmp_path: Path) -> None:
    config, directory = _copy(tmp_path, "shapes-detector-postprocess")
    (directory / "labels.txt").write_text("circle\nsquare\ntriangle\nstar\nhexagon\n")
    with pytest.raises(ContractError, match=r"no default threshold for labels \['hexagon'\]"):
        load_step(config, directory)
    (directory / "labels.txt").unlink()
    with pytest.raises(ContractError, match=r"missing .*labels\.txt"):
        load_step(config, directory)


def test_inline_labels_replace_the_label_file(tmp_path: Path) -> None:
    config, directory = _copy(tmp_path, "shapes-classifier-postprocess")
    (directory / "labels.txt").unlink()
    _edit_contract(directory, labels=["circle", "square", "triangle", "star"])
    step = load_step(config, directory)
    out = step({"PROBABILITIES": np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)})
    assert out["LABELS"][0].tolist() == [b"star", b"triangle", b"square", b"circle"]


def test_a_unit_that_cannot_load_exits_1_with_the_loaders_message_last(tmp_path: Path) -> None:
    for step in ("", "-preprocess", "-onnx", "-postprocess"):
        shutil.copytree(REPOSITORY / f"shapes-detector{step}", tmp_path / f"shapes-detector{step}")
    (tmp_path / "shapes-detector-postprocess" / "1" / "thresholds.json").write_text("{}")
    done = subprocess.run(
        [sys.executable, "-m", "kiu", "unit", "--model-repository", str(tmp_path),
         "--model", "shapes-detector", "--log-level", "WARNING"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("kiu unit: cannot load model 'shapes-detector': ")
    assert "thresholds.json: no default threshold for labels ['circle'" in last
