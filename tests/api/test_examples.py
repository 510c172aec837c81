"""The example manifests are admitted by the CRD and parse with kiu.api."""

from __future__ import annotations

from pathlib import Path

import admission
import pytest
import samples
import yaml

from kiu.api import projectversion

EXAMPLES = admission.ROOT / "examples"
MANIFESTS = sorted(path for path in EXAMPLES.glob("*.yaml") if path.name != "kustomization.yaml")


def test_kustomization_lists_every_example() -> None:
    kustomization = yaml.safe_load((EXAMPLES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.stem)
def test_example_is_admitted_and_parses(path: Path) -> None:
    (obj,) = yaml.safe_load_all(path.read_text())
    stored, errors = admission.admit(obj)
    assert errors == []
    version = projectversion.parse(samples.stored(stored))
    assert obj["apiVersion"] == projectversion.API_VERSION
    assert obj["kind"] == projectversion.KIND
    assert version.spec.model.name == version.metadata.name == path.stem
    assert version.spec.inference_unit.runtime == "cpu"


def test_classifier_example_is_the_documented_one() -> None:
    obj = yaml.safe_load((EXAMPLES / "shapes-classifier.yaml").read_text())
    spec = projectversion.parse(samples.stored(obj)).spec
    assert (spec.min_inference_units, spec.max_inference_units) == (1, 4)
    assert spec.model == projectversion.Model(
        name="shapes-classifier", repository="/opt/kiu/triton-models", task="Classification"
    )
    assert spec.inference_unit.tps == 5


def test_detector_example_detects_objects() -> None:
    obj = yaml.safe_load((EXAMPLES / "shapes-detector.yaml").read_text())
    assert projectversion.parse(samples.stored(obj)).spec.model.task == "ObjectDetection"
