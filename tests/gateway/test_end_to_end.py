"""boto3 (signed, unchanged) against a `kiu gateway` process in front of real `kiu unit`s."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3
from botocore.exceptions import ClientError

from kiu.imaging import scenes

from . import processes
from .conftest import NAMESPACE, arn, directory, png, project_arn, rekognition, version, write
from .signing import sign


@pytest.fixture(scope="module")
def fleet(
    real_units: dict[str, list[processes.Unit]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[processes.Gateway, Path, dict[str, Any]]]:
    logs = tmp_path_factory.mktemp("gateway")
    path = logs / "directory.yaml"
    classifiers, detectors = real_units["classifier"], real_units["detector"]
    content = directory(
        [
            version("shoes-v3", units=[], tps=40, minInferenceUnits=3),
            version("boxes", units=[], tps=40, task="ObjectDetection", model="shapes-detector"),
            version("throttled", units=[], tps=1),
            version("parked", units=[], state="Stopped"),
        ]
    )
    entries = content["projectVersions"]
    entries[0]["units"] = [u.entry() for u in classifiers]
    entries[1]["units"] = [u.entry() for u in detectors]
    entries[2]["units"] = [classifiers[0].entry()]
    entries[3]["units"] = [classifiers[0].entry()]
    write(path, content)
    with processes.gateway(path, logs, "--zone-slack", "1") as gw:
        yield gw, path, content


def client(fleet: tuple[processes.Gateway, Path, dict[str, Any]], **options: Any) -> Any:
    return rekognition(fleet[0].port, **options)


def error_code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return str(caught.value.response["Error"]["Code"])


def outcome(call: Any, **kwargs: Any) -> str:
    try:
        call(**kwargs)
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


def test_classification_through_boto3(fleet: Any) -> None:
    rekognition_ = client(fleet)
    right = 0
    for scene in scenes.scenes("classification", seed=11, count=6):
        answer = rekognition_.detect_custom_labels(
            ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": scene.image}
        )
        labels = answer["CustomLabels"]
        right += bool(labels) and labels[0]["Name"] == scene.objects[0].label
        assert all(set(label) == {"Name", "Confidence"} for label in labels)
        confidences = [label["Confidence"] for label in labels]
        assert confidences == sorted(confidences, reverse=True)
        assert all(0 <= c <= 100 for c in confidences)
    assert right >= 5


def test_detection_returns_boxes_as_ratios(fleet: Any) -> None:
    rekognition_ = client(fleet)
    found = 0
    for scene in scenes.scenes("detection", seed=5, count=3):
        answer = rekognition_.detect_custom_labels(
            ProjectVersionArn=arn("boxes"), Image={"Bytes": scene.image}, MinConfidence=0
        )
        for label in answer["CustomLabels"]:
            box = label["Geometry"]["BoundingBox"]
            assert set(box) == {"Width", "Height", "Left", "Top"}
            assert all(0.0 <= v <= 1.0 for v in box.values())
            assert label["Name"] in scenes.SHAPES
            found += 1
    assert found > 0


def test_min_confidence_and_max_results_with_a_real_model(fleet: Any) -> None:
    rekognition_ = client(fleet)
    image = next(scenes.scenes("detection", seed=9, count=1)).image
    everything = rekognition_.detect_custom_labels(
        ProjectVersionArn=arn("boxes"), Image={"Bytes": image}, MinConfidence=0
    )["CustomLabels"]
    default = rekognition_.detect_custom_labels(
        ProjectVersionArn=arn("boxes"), Image={"Bytes": image}
    )["CustomLabels"]
    assert len(everything) >= len(default)
    one = rekognition_.detect_custom_labels(
        ProjectVersionArn=arn("boxes"), Image={"Bytes": image}, MinConfidence=0, MaxResults=1
    )["CustomLabels"]
    assert one == everything[:1]


def test_every_error_through_real_processes(fleet: Any) -> None:
    detect = client(fleet).detect_custom_labels
    good = next(scenes.scenes("classification", seed=3, count=1)).image
    truncated = good[:200] if good.startswith(b"\x89PNG") else png()[:60]
    assert (
        error_code(detect, ProjectVersionArn=arn("nope"), Image={"Bytes": good})
        == "ResourceNotFoundException"
    )
    assert (
        error_code(detect, ProjectVersionArn=arn("parked"), Image={"Bytes": good})
        == "ResourceNotReadyException"
    )
    assert (
        error_code(detect, ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": png(fmt="GIF")})
        == "InvalidImageFormatException"
    )
    assert (
        error_code(detect, ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": png(40, 40)})
        == "InvalidParameterException"
    )
    big = good + b"\0" * (4 * 1024 * 1024)
    assert (
        error_code(detect, ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": big})
        == "ImageTooLargeException"
    )
    # the header is fine, the pixels are missing: the unit cannot decode it
    assert (
        error_code(detect, ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": truncated})
        == "InvalidImageFormatException"
    )
    assert (
        error_code(
            detect,
            ProjectVersionArn=arn("shoes-v3"),
            Image={"S3Object": {"Bucket": "photos", "Name": "n.png"}},
        )
        == "InvalidS3ObjectException"
    )
    outcomes = [
        outcome(detect, ProjectVersionArn=arn("throttled"), Image={"Bytes": good}) for _ in range(3)
    ]
    assert outcomes[0] == "ok"
    assert "ProvisionedThroughputExceededException" in outcomes[1:]


def test_start_stop_describe_and_the_waiter(fleet: Any) -> None:
    rekognition_ = client(fleet)
    assert (
        rekognition_.stop_project_version(ProjectVersionArn=arn("shoes-v3"))["Status"] == "STOPPING"
    )
    try:
        statuses = {
            d["ProjectVersionArn"].split("/")[3]: d["Status"]
            for d in rekognition_.describe_project_versions(ProjectArn=project_arn())[
                "ProjectVersionDescriptions"
            ]
        }
        assert statuses == {
            "shoes-v3": "STOPPED",
            "boxes": "RUNNING",
            "throttled": "RUNNING",
            "parked": "STOPPED",
        }
    finally:
        started = rekognition_.start_project_version(
            ProjectVersionArn=arn("shoes-v3"), MinInferenceUnits=3, MaxInferenceUnits=6
        )
    assert started["Status"] == "STARTING"
    rekognition_.get_waiter("project_version_running").wait(
        ProjectArn=project_arn(),
        VersionNames=["shoes-v3"],
        WaiterConfig={"Delay": 1, "MaxAttempts": 5},
    )
    (description,) = rekognition_.describe_project_versions(
        ProjectArn=project_arn(), VersionNames=["shoes-v3"]
    )["ProjectVersionDescriptions"]
    assert (description["MinInferenceUnits"], description["MaxInferenceUnits"]) == (3, 6)
    assert rekognition_.detect_custom_labels(
        ProjectVersionArn=arn("shoes-v3"),
        Image={"Bytes": next(scenes.scenes("classification", seed=1, count=1)).image},
    )["CustomLabels"]


def test_native_rest_api_with_raw_and_json_bodies(fleet: Any) -> None:
    gw = fleet[0]
    scene = next(scenes.scenes("classification", seed=21, count=1))
    path = f"/v1/namespaces/{NAMESPACE}/projectversions/shoes-v3:detect"
    url = f"{gw.url}{path}?maxResults=1&minConfidence=10"
    content_type = "image/png" if scene.format == "PNG" else "image/jpeg"
    http = urllib3.PoolManager()
    headers = sign(url=url, body=scene.image, headers={"Content-Type": content_type})
    response = http.request("POST", url, body=scene.image, headers=headers)
    assert response.status == 200, response.data
    labels = json.loads(response.data)["CustomLabels"]
    assert [label["Name"] for label in labels] == [scene.objects[0].label]
    body = json.dumps({"Image": {"Bytes": base64.b64encode(scene.image).decode()}}).encode()
    plain = url.split("?")[0]
    headers = sign(url=plain, body=body, headers={"Content-Type": "application/json"})
    response = http.request("POST", plain, body=body, headers=headers)
    assert response.status == 200, response.data
    assert json.loads(response.data)["CustomLabels"][0]["Name"] == scene.objects[0].label
    response = http.request("POST", plain, body=scene.image, headers={"Content-Type": content_type})
    assert response.status == 403
    assert json.loads(response.data)["__type"] == "MissingAuthenticationTokenException"


def test_routing_keeps_idle_traffic_in_zone_and_spills_under_load(
    fleet: Any, real_units: Any
) -> None:
    classifiers = real_units["classifier"]
    before = [processes.served(u) for u in classifiers]
    rekognition_ = client(fleet)
    image = next(scenes.scenes("classification", seed=2, count=1)).image
    for _ in range(10):  # one at a time: the zone-a unit always has headroom
        rekognition_.detect_custom_labels(ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": image})
    after = [processes.served(u) for u in classifiers]
    assert [a - b for a, b in zip(after, before, strict=True)] == [10, 0, 0]

    clients = [client(fleet) for _ in range(8)]

    def burst(c: Any) -> int:
        for _ in range(6):
            c.detect_custom_labels(ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": image})
        return 6

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(burst, clients)) == 48
    spilled = [processes.served(u) - a for u, a in zip(classifiers, after, strict=True)]
    assert sum(spilled) == 48
    assert spilled[0] > 0
    assert spilled[1] + spilled[2] > 0, spilled
