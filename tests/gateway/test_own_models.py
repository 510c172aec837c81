"""Users' own ONNX models, imported with `kiu model import`, served by real `kiu unit`
processes behind a real gateway and called with boto3: the answers equal an independent
reference (labels exact, confidences within 0.01 points, boxes within 0.001)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiu.unit import importer

from ..unit_runtime.own_models import (
    MODELS,
    OwnModel,
    build,
    compare,
    expected,
    import_flags,
    photo,
)
from . import processes
from .conftest import arn, directory, rekognition, version, write

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
        compare(got, want, f"{model.name} image {index}")
        answered += len(want)
    assert answered > 0, "a model that finds nothing proves nothing"
