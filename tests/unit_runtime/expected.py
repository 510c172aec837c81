"""Fixed test images and the committed results the bundled models give for them.

Both the in-process runtime and real `kiu unit` processes (over gRPC and
HTTP) are checked against the same expectations, so the protocol layer can
neither lose nor alter results. Regenerate the images and expectations after
an intended change (new models, new scenes) with KIU_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kiu.imaging import scenes

HERE = Path(__file__).parent
REPOSITORY = HERE.parents[1] / "triton-models"
MODELS: dict[str, scenes.Kind] = {
    "shapes-classifier": "classification",
    "shapes-detector": "detection",
}
IMAGE_COUNT = 6
UPDATE = os.environ.get("KIU_UPDATE_GOLDEN") == "1"

#: Entries below this confidence are not compared: which of them clear the 1% floor may
#: differ in the last bits between machines.
COMPARED_FROM = 2.0
CONFIDENCE_TOLERANCE = 0.05
BOX_TOLERANCE = 0.002


def images(model: str) -> list[bytes]:
    """The model's fixed test images (PNG and JPEG), in order."""
    directory = HERE / "images" / model
    if UPDATE:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
        for index, scene in enumerate(scenes.scenes(MODELS[model], seed=2024, count=IMAGE_COUNT)):
            suffix = "png" if scene.format == "PNG" else "jpg"
            (directory / f"{index:02d}.{suffix}").write_bytes(scene.image)
    return [path.read_bytes() for path in sorted(directory.iterdir())]


def summary(outputs: Mapping[str, np.ndarray], item: int) -> list[dict[str, Any]]:
    """One batch item's results as plain data, padding dropped."""
    results = []
    for index, name in enumerate(outputs["LABELS"][item]):
        label = name.decode() if isinstance(name, bytes) else str(name)
        if not label:
            continue
        entry: dict[str, Any] = {
            "label": label,
            "confidence": round(float(outputs["CONFIDENCES"][item][index]), 3),
            "threshold": round(float(outputs["THRESHOLDS"][item][index]), 3),
        }
        if "BOXES" in outputs:
            entry["box"] = [round(float(v), 4) for v in outputs["BOXES"][item][index]]
        results.append(entry)
    return results


def check(model: str, results: Sequence[list[dict[str, Any]]]) -> None:
    """Assert `results` (one summary per fixed image) match the committed expectations."""
    path = HERE / "golden" / f"{model}.json"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(list(results), indent=1) + "\n")
    expected = json.loads(path.read_text())
    assert len(results) == len(expected)
    for index, (got, want) in enumerate(zip(results, expected, strict=True)):
        got = [e for e in got if e["confidence"] >= COMPARED_FROM]
        want = [e for e in want if e["confidence"] >= COMPARED_FROM]
        where = f"{model} image {index}"
        assert [e["label"] for e in got] == [e["label"] for e in want], where
        for g, w in zip(got, want, strict=True):
            assert abs(g["confidence"] - w["confidence"]) <= CONFIDENCE_TOLERANCE, where
            assert g["threshold"] == w["threshold"], where
            if "box" in w:
                assert np.allclose(g["box"], w["box"], atol=BOX_TOLERANCE), where
