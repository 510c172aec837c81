"""End to end on the local cluster: users' own models, imported with `kiu model import`,
served by the chart-installed operator and gateway on the cpu runtime and called with
boto3; the answers equal the independent reference, whether the repository is a host path,
an S3-compatible store (moto on the host, signatures checked) or a PersistentVolumeClaim.
A broken repository turns its ProjectVersion Degraded with the loader's or the store's
message.

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
from tests.cluster.fixtures import BRIDGE_IP, REPO, Cluster, host_path_claim, wait_for
from tests.gateway import processes
from tests.operator.harness import projectversion
from tests.unit_runtime.own_models import (
    MODELS,
    OwnModel,
    build,
    compare,
    expected,
    import_flags,
    photo,
)

pytestmark = pytest.mark.cluster

CHOSEN = [m for m in MODELS if m.name in {"cls-imagenet", "det-yolov8-dynamic"}]
IMAGES = [photo(640, 480, seed=1), photo(333, 500, seed=2)]


def _version(
    name: str, repository: str, task: str, *, model: str | None = None, secret: str | None = None
) -> dict[str, Any]:
    spec = {"name": model or name, "repository": repository, "task": task}
    unit: dict[str, Any] = {"runtime": "cpu", "tps": 20}
    if secret:
        unit["repositorySecretName"] = secret
    return projectversion(name, project="mine", minInferenceUnits=1, model=spec, inferenceUnit=unit)


def _task(model: OwnModel) -> str:
    return "Classification" if model.task == "classification" else "ObjectDetection"


def _answers_equal_the_reference(release: Release, repository: Path) -> None:
    """Every chosen model, served under its own name, answers as the reference does."""
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


def _degraded(release: Release, name: str, words: str) -> dict[str, Any]:
    """The version's Degraded condition, once its message holds `words`."""

    def found() -> dict[str, Any] | None:
        conditions = release.status(name).get("conditions", [])
        condition = next((c for c in conditions if c["type"] == "Degraded"), None)
        return condition if condition and words in condition.get("message", "") else None

    condition = wait_for(found, timeout=120, what=f"{name} Degraded with {words!r}")
    assert condition["status"] == "True"
    return condition


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
        cluster.apply(_version(model.name, str(repository), _task(model)), namespace)
    cluster.apply(_version("broken", str(repository), "Classification"), namespace)

    _answers_equal_the_reference(release, repository)
    condition = _degraded(release, "broken", "CMYK")
    assert "colour must be one of RGB, BGR, not 'CMYK'" in condition["message"]


def test_own_models_from_s3_answer_through_the_chart(
    release: Release, cluster: Cluster, namespace: str, repository: Path, tmp_path: Path
) -> None:
    with processes.object_store(tmp_path, host=BRIDGE_IP) as store:
        store.s3().create_bucket(Bucket="models")
        for model in CHOSEN:
            for step in ("", "-preprocess", "-onnx", "-postprocess"):
                name = f"{model.name}{step}"
                store.upload(repository / name, "models", f"own/{name}")
        # the classifier without its ONNX step
        for step in ("", "-preprocess", "-postprocess"):
            name = f"cls-imagenet{step}"
            store.upload(repository / name, "models", f"partial/{name}")
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s3-reader"},
                "stringData": store.environment(),
            },
            namespace,
        )
        address = store.endpoint.removeprefix("http://")
        for model in CHOSEN:
            uri = f"s3://{address}/models/own"
            cluster.apply(_version(model.name, uri, _task(model), secret="s3-reader"), namespace)
        partial = f"s3://{address}/models/partial"
        missing = _version(
            "missing", partial, "Classification", model="cls-imagenet", secret="s3-reader"
        )
        cluster.apply(missing, namespace)

        _answers_equal_the_reference(release, repository)
        condition = _degraded(release, "missing", "nothing under")
        assert (
            f"kiu unit: cannot copy model 'cls-imagenet' from {partial}: "
            "no model 'cls-imagenet-onnx': nothing under partial/cls-imagenet-onnx/"
        ) in condition["message"]


def test_own_models_from_a_volume_claim_answer_through_the_chart(
    release: Release, cluster: Cluster, namespace: str, repository: Path
) -> None:
    with host_path_claim(cluster, namespace, claim="models", path=repository.parent):
        for model in CHOSEN:
            uri = f"pvc://models/{repository.name}"
            cluster.apply(_version(model.name, uri, _task(model)), namespace)
        _answers_equal_the_reference(release, repository)
