"""End to end on the local cluster: users' own models, imported with `kiu model import`
into a repository on a host path, served by the chart-installed operator and gateway and
called with boto3; the answers equal the independent reference. A broken repository in the
same release turns its ProjectVersion Degraded with the loader's message.

Pods are host processes that mount an emptyDir over /tmp, so the repository lives in the
checkout (`.kiu/repositories/<namespace>`), as a host path or PVC would on a real cluster.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiu.unit import importer
from tests.chart import chart
from tests.chart.chart import Release
from tests.cluster.fixtures import REPO, Cluster, wait_for
from tests.operator.harness import projectversion
from tests.unit_runtime.own_models import MODELS, build, compare, expected, import_flags, photo

pytestmark = pytest.mark.cluster

CHOSEN = [m for m in MODELS if m.name in {"cls-imagenet", "det-yolov8-dynamic"}]
IMAGES = [photo(640, 480, seed=1), photo(333, 500, seed=2)]


def _version(name: str, repository: Path, task: str) -> dict[str, Any]:
    model = {"name": name, "repository": str(repository), "task": task}
    return projectversion(
        name, project="mine", minInferenceUnits=1, model=model,
        inferenceUnit={"runtime": "cpu", "tps": 20},
    )  # fmt: skip


@pytest.fixture
def repository(namespace: str) -> Iterator[Path]:
    path = REPO / ".kiu" / "repositories" / namespace
    work = path / "sources"
    work.mkdir(parents=True)
    for model in CHOSEN:
        build(model, work / f"{model.name}.onnx")
        flags = import_flags(model, work / f"{model.name}.onnx", work / f"{model.name}.txt",
                             path / model.name)  # fmt: skip
        assert importer.main(["import", *flags]) == 0
    # a broken copy of the classifier: its contract names an unknown colour order
    for step in ("", "-preprocess", "-onnx", "-postprocess"):
        shutil.copytree(path / f"cls-imagenet{step}", path / f"broken{step}")
        config = path / f"broken{step}" / "config.pbtxt"
        config.write_text(config.read_text().replace("cls-imagenet", "broken"))
    contract = path / "broken-preprocess" / "1" / "contract.json"
    contract.write_text(contract.read_text().replace('"RGB"', '"CMYK"'))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[Release]:
    with chart.installed(cluster, namespace) as installed:
        yield installed


def test_own_models_from_a_host_path_answer_through_the_chart(
    release: Release, cluster: Cluster, namespace: str, repository: Path
) -> None:
    for model in CHOSEN:
        task = "Classification" if model.task == "classification" else "ObjectDetection"
        cluster.apply(_version(model.name, repository, task), namespace)
    cluster.apply(_version("broken", repository, "Classification"), namespace)

    rekognition = release.rekognition()
    for model in CHOSEN:
        status = wait_for(
            lambda name=model.name: (
                (s := release.status(name)).get("status") == "RUNNING"
                and s.get("inServiceInferenceUnits") == 1
                and s
            ),
            timeout=180,
            what=f"{model.name} RUNNING with one unit in service",
        )
        for index, image in enumerate(IMAGES):
            got = wait_for(
                lambda image=image, arn=status["arn"]: rekognition.detect_custom_labels(
                    ProjectVersionArn=arn, Image={"Bytes": image}, MinConfidence=0
                ),
                timeout=30,
                what=f"DetectCustomLabels on {model.name}",
            )["CustomLabels"]
            want = expected(model, repository / "sources" / f"{model.name}.onnx", image)
            compare(got, want, f"{model.name} image {index}")

    def degraded() -> dict[str, Any] | None:
        conditions = release.status("broken").get("conditions", [])
        found = next((c for c in conditions if c["type"] == "Degraded"), None)
        return found if found and "CMYK" in found.get("message", "") else None

    condition = wait_for(degraded, timeout=120, what="broken Degraded with the loader's message")
    assert condition["status"] == "True"
    assert "colour must be one of RGB, BGR, not 'CMYK'" in condition["message"]
