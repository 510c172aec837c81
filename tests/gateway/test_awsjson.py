"""The AWS JSON 1.1 API through boto3's rekognition client, over fake units."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError, WaiterError
from prometheus_client.parser import text_string_to_metric_families

from .conftest import CREATED, NAMESPACE, arn, directory, png, project_arn, version
from .signing import ACCESS_KEY, SECRET_KEY, sign


def code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


async def expect(local: Any, code_name: str, fn: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        await local.call(fn, **kwargs)
    assert code(caught.value) == code_name, caught.value.response
    assert caught.value.response["ResponseMetadata"]["RequestId"]
    return caught.value


async def test_detect_applies_per_label_thresholds_without_min_confidence(local: Any) -> None:
    gw = await local(directory([version("shoes-v3")]))
    answer = await gw.call(
        gw.client().detect_custom_labels, ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": png()}
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"
    assert answer["CustomLabels"] == [
        {"Name": "circle", "Confidence": 91.5},
        {"Name": "square", "Confidence": 40.0},
    ]


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"MinConfidence": 0}, ["circle", "square", "star"]),
        ({"MinConfidence": 45.0}, ["circle"]),
        ({"MinConfidence": 100}, []),
        ({"MaxResults": 1}, ["circle"]),
        ({"MaxResults": 0}, []),
        ({"MinConfidence": 0, "MaxResults": 2}, ["circle", "square"]),
    ],
)
async def test_min_confidence_and_max_results(
    local: Any, options: dict[str, Any], names: list[str]
) -> None:
    gw = await local(directory([version("shoes-v3")]))
    answer = await gw.call(
        gw.client().detect_custom_labels,
        ProjectVersionArn=arn("shoes-v3"),
        Image={"Bytes": png()},
        **options,
    )
    assert [label["Name"] for label in answer["CustomLabels"]] == names


async def test_detection_models_return_boxes(local: Any) -> None:
    gw = await local(directory([version("boxes", task="ObjectDetection", model="shapes-detector")]))
    answer = await gw.call(
        gw.client().detect_custom_labels, ProjectVersionArn=arn("boxes"), Image={"Bytes": png()}
    )
    assert answer["CustomLabels"][0] == {
        "Name": "circle",
        "Confidence": 91.5,
        "Geometry": {"BoundingBox": {"Width": 0.3, "Height": 0.4, "Left": 0.1, "Top": 0.2}},
    }


@pytest.mark.parametrize(
    ("image", "error"),
    [
        ({"Bytes": png(fmt="GIF")}, "InvalidImageFormatException"),
        ({"Bytes": b"not an image at all"}, "InvalidImageFormatException"),
        ({"Bytes": png(32, 32)}, "InvalidParameterException"),
        ({"Bytes": png(5000, 64)}, "InvalidParameterException"),
        ({"Bytes": png() + b"\0" * (4 * 1024 * 1024)}, "ImageTooLargeException"),
        ({"S3Object": {"Bucket": "photos", "Name": "a.png"}}, "InvalidS3ObjectException"),
        ({}, "InvalidParameterException"),
    ],
    ids=["gif", "text", "too-small", "too-wide", "too-large", "s3-without-store", "no-image"],
)
async def test_image_errors_are_decided_before_any_unit(
    local: Any, image: dict[str, Any], error: str
) -> None:
    gw = await local(directory([version("shoes-v3")]))
    await expect(
        gw, error, gw.client().detect_custom_labels, ProjectVersionArn=arn("shoes-v3"), Image=image
    )
    assert gw.transport.calls == []


async def test_resource_errors(local: Any) -> None:
    gw = await local(
        directory(
            [
                version("shoes-v3"),
                version("stopped", state="Stopped"),
                version("empty", units=[]),
            ]
        )
    )
    detect = gw.client().detect_custom_labels
    image = {"Bytes": png()}
    await expect(
        gw, "ResourceNotFoundException", detect, ProjectVersionArn=arn("nope"), Image=image
    )
    await expect(
        gw, "ResourceNotFoundException", detect, ProjectVersionArn=arn("shoes-v3", 5), Image=image
    )
    await expect(
        gw,
        "InvalidParameterException",
        detect,
        ProjectVersionArn="arn:aws:rekognition:us-east-1:123456789012:project/x/version/y/1",
        Image=image,
    )
    await expect(
        gw, "ResourceNotReadyException", detect, ProjectVersionArn=arn("stopped"), Image=image
    )
    await expect(
        gw, "ResourceNotReadyException", detect, ProjectVersionArn=arn("empty"), Image=image
    )
    assert gw.transport.calls == []


async def test_beyond_the_tps_limit_is_provisioned_throughput_exceeded(local: Any) -> None:
    gw = await local(directory([version("slow", tps=1)]))
    client = gw.client()
    first = await gw.call(
        client.detect_custom_labels, ProjectVersionArn=arn("slow"), Image={"Bytes": png()}
    )
    assert first["CustomLabels"]
    await expect(
        gw,
        "ProvisionedThroughputExceededException",
        client.detect_custom_labels,
        ProjectVersionArn=arn("slow"),
        Image={"Bytes": png()},
    )
    assert len(gw.transport.calls) == 1


async def test_botocore_retries_throttled_calls_and_gets_through(local: Any) -> None:
    gw = await local(directory([version("slow", tps=2)]))
    client = gw.client(attempts=5)
    for _ in range(4):
        await gw.call(
            client.detect_custom_labels, ProjectVersionArn=arn("slow"), Image={"Bytes": png()}
        )
    assert len(gw.transport.calls) == 4


async def test_start_stop_describe_and_the_waiter(local: Any) -> None:
    gw = await local(
        directory([version("shoes-v3", minInferenceUnits=1), version("off", state="Stopped")])
    )
    client = gw.client()
    stopped = await gw.call(client.stop_project_version, ProjectVersionArn=arn("shoes-v3"))
    assert stopped["Status"] == "STOPPING"
    await expect(
        gw, "ResourceInUseException", client.stop_project_version, ProjectVersionArn=arn("off")
    )
    described = await gw.call(client.describe_project_versions, ProjectArn=project_arn())
    assert described["ProjectVersionDescriptions"][0]["Status"] == "STOPPED"
    await expect(
        gw,
        "ResourceNotReadyException",
        client.detect_custom_labels,
        ProjectVersionArn=arn("shoes-v3"),
        Image={"Bytes": png()},
    )
    started = await gw.call(
        client.start_project_version,
        ProjectVersionArn=arn("shoes-v3"),
        MinInferenceUnits=2,
        MaxInferenceUnits=4,
    )
    assert started["Status"] == "STARTING"
    waiter = client.get_waiter("project_version_running")
    await gw.call(
        waiter.wait,
        ProjectArn=project_arn(),
        VersionNames=["shoes-v3"],
        WaiterConfig={"Delay": 1, "MaxAttempts": 3},
    )
    described = await gw.call(
        client.describe_project_versions, ProjectArn=project_arn(), VersionNames=["shoes-v3"]
    )
    (description,) = described["ProjectVersionDescriptions"]
    assert description["Status"] == "RUNNING"
    assert description["MinInferenceUnits"] == 2
    assert description["MaxInferenceUnits"] == 4
    assert description["ProjectVersionArn"] == arn("shoes-v3")
    assert description["CreationTimestamp"].timestamp() == CREATED / 1000
    await expect(
        gw,
        "ResourceInUseException",
        client.start_project_version,
        ProjectVersionArn=arn("shoes-v3"),
        MinInferenceUnits=1,
    )
    await expect(
        gw,
        "InvalidParameterException",
        client.start_project_version,
        ProjectVersionArn=arn("shoes-v3"),
        MinInferenceUnits=3,
        MaxInferenceUnits=2,
    )
    await expect(
        gw,
        "LimitExceededException",
        client.start_project_version,
        ProjectVersionArn=arn("off"),
        MinInferenceUnits=5000,
    )


async def test_waiter_fails_on_failed(local: Any) -> None:
    gw = await local(directory([version("broken", status="FAILED", statusMessage="no nodes")]))
    waiter = gw.client().get_waiter("project_version_running")
    with pytest.raises(WaiterError, match="failure state"):
        await gw.call(
            waiter.wait, ProjectArn=project_arn(), WaiterConfig={"Delay": 1, "MaxAttempts": 2}
        )


async def test_describe_pages_newest_first_and_filters_by_name(local: Any) -> None:
    versions = [version(f"v{i}", created=CREATED + i) for i in range(5)]
    versions.append(version("other", project="boots"))
    gw = await local(directory(versions))
    client = gw.client()
    page = await gw.call(client.describe_project_versions, ProjectArn=project_arn(), MaxResults=2)
    assert [d["ProjectVersionArn"] for d in page["ProjectVersionDescriptions"]] == [
        arn("v4", CREATED + 4),
        arn("v3", CREATED + 3),
    ]
    assert page["NextToken"]
    paginator = client.get_paginator("describe_project_versions")
    pages = await gw.call(
        lambda: list(paginator.paginate(ProjectArn=project_arn(), PaginationConfig={"PageSize": 2}))
    )
    assert [len(p["ProjectVersionDescriptions"]) for p in pages] == [2, 2, 1]
    names = [
        d["ProjectVersionArn"].split("/")[3] for p in pages for d in p["ProjectVersionDescriptions"]
    ]
    assert names == ["v4", "v3", "v2", "v1", "v0"]
    filtered = await gw.call(
        client.describe_project_versions, ProjectArn=project_arn(), VersionNames=["v1", "v3", "zz"]
    )
    assert [
        d["ProjectVersionArn"].split("/")[3] for d in filtered["ProjectVersionDescriptions"]
    ] == ["v3", "v1"]
    await expect(
        gw,
        "InvalidPaginationTokenException",
        client.describe_project_versions,
        ProjectArn=project_arn(),
        NextToken="garbage!",
    )
    await expect(
        gw,
        "ResourceNotFoundException",
        client.describe_project_versions,
        ProjectArn=project_arn("nothing"),
    )
    await expect(
        gw, "InvalidParameterException", client.describe_project_versions, ProjectArn=arn("v1")
    )
    await expect(
        gw,
        "InvalidParameterException",
        client.describe_project_versions,
        ProjectArn=project_arn(),
        VersionNames=[f"n{i}" for i in range(11)],
    )


async def test_authentication_errors(local: Any) -> None:
    gw = await local(
        directory(
            [version("shoes-v3"), version("elsewhere", namespace="other")],
        )
    )
    image = {"Bytes": png()}
    wrong = gw.client(secret="wrong-secret").detect_custom_labels
    await expect(
        gw, "InvalidSignatureException", wrong, ProjectVersionArn=arn("shoes-v3"), Image=image
    )
    unknown = gw.client(key="AKIDNOBODY").detect_custom_labels
    await expect(
        gw, "UnrecognizedClientException", unknown, ProjectVersionArn=arn("shoes-v3"), Image=image
    )
    scoped = gw.client().detect_custom_labels
    await expect(
        gw,
        "AccessDeniedException",
        scoped,
        ProjectVersionArn=arn("elsewhere", namespace="other"),
        Image=image,
    )
    assert gw.transport.calls == []


async def raw(
    url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None), dict(response.headers)


def aws_headers(url: str, body: bytes, operation: str, **extra: str) -> dict[str, str]:
    headers = {
        "X-Amz-Target": f"RekognitionService.{operation}",
        "Content-Type": "application/x-amz-json-1.1",
    }
    headers.update(extra)
    return sign(url=url, body=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "operation", "status", "name"),
    [
        (b"{not json", "DetectCustomLabels", 400, "SerializationException"),
        (b"[1, 2]", "StopProjectVersion", 400, "SerializationException"),
        (b"{}", "DeleteProject", 400, "UnknownOperationException"),
        (b'{"ProjectVersionArn": 7}', "StopProjectVersion", 400, "InvalidParameterException"),
        (
            b'{"ProjectVersionArn": "x", "Image": {"Bytes": "@@@@"}}',
            "DetectCustomLabels",
            400,
            "InvalidParameterException",
        ),
    ],
)
async def test_malformed_requests_get_reference_errors_never_500(
    local: Any, body: bytes, operation: str, status: int, name: str
) -> None:
    gw = await local(directory([version("shoes-v3")]))
    if b'"x"' in body:
        body = body.replace(b'"x"', json.dumps(arn("shoes-v3")).encode())
    code_, answer, headers = await raw(
        gw.url + "/", body, aws_headers(gw.url + "/", body, operation)
    )
    assert (code_, answer["__type"]) == (status, name)
    assert answer["message"]
    assert headers["x-amzn-RequestId"]
    assert headers["Content-Type"] == "application/x-amz-json-1.1"


async def test_replayed_state_change_is_refused_but_repeated_reads_are_not(local: Any) -> None:
    gw = await local(directory([version("shoes-v3")]))
    body = json.dumps({"ProjectVersionArn": arn("shoes-v3")}).encode()
    headers = aws_headers(gw.url + "/", body, "StopProjectVersion")
    first = await raw(gw.url + "/", body, headers)
    assert (first[0], first[1]) == (200, {"Status": "STOPPING"})
    await gw.call(
        gw.client().start_project_version, ProjectVersionArn=arn("shoes-v3"), MinInferenceUnits=1
    )
    again = await raw(gw.url + "/", body, headers)
    assert (again[0], again[1]["__type"]) == (400, "InvalidSignatureException")
    assert "already been used" in again[1]["message"]
    detect = json.dumps(
        {"ProjectVersionArn": arn("shoes-v3"), "Image": {"Bytes": base64.b64encode(png()).decode()}}
    ).encode()
    headers = aws_headers(gw.url + "/", detect, "DetectCustomLabels")
    for _ in range(3):  # identical signed reads within a second: a load test, a retry
        status, _, _ = await raw(gw.url + "/", detect, headers)
        assert status == 200


async def test_unsigned_requests_need_allow_anonymous(local: Any) -> None:
    body = json.dumps(
        {"ProjectVersionArn": arn("shoes-v3"), "Image": {"Bytes": base64.b64encode(png()).decode()}}
    ).encode()
    headers = {"X-Amz-Target": "RekognitionService.DetectCustomLabels"}
    closed = await local(directory([version("shoes-v3")]))
    status, answer, _ = await raw(closed.url + "/", body, headers)
    assert (status, answer["__type"]) == (403, "MissingAuthenticationTokenException")
    open_ = await local(directory([version("shoes-v3")]), "--allow-anonymous")
    status, answer, _ = await raw(open_.url + "/", body, headers)
    assert status == 200
    assert answer["CustomLabels"]


async def test_unknown_paths_answer_in_the_error_shape(local: Any) -> None:
    gw = await local(directory([version("shoes-v3")]))
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.url + "/nope") as response:
            assert response.status == 404
            assert (await response.json(content_type=None))["__type"] == "UnknownOperationException"
        async with session.get(gw.url + "/") as response:
            assert response.status == 405


async def test_oversized_body_is_refused_without_reading_it_all(local: Any) -> None:
    gw = await local(directory([version("shoes-v3")]), "--max-body", "100000")
    body = b"{" + b" " * 200_000 + b"}"
    status, answer, _ = await raw(
        gw.url + "/", body, aws_headers(gw.url + "/", body, "DetectCustomLabels")
    )
    assert (status, answer["__type"]) == (400, "ImageTooLargeException")


async def test_metrics_count_demand_and_outcomes(local: Any) -> None:
    gw = await local(directory([version("slow", tps=0.5)]), "--burst-seconds", "4")  # 2 tokens
    client = gw.client()
    await gw.call(
        client.detect_custom_labels, ProjectVersionArn=arn("slow"), Image={"Bytes": png()}
    )
    # The budget is taken before the image is decoded: a bad image costs a token.
    await expect(
        gw,
        "InvalidImageFormatException",
        client.detect_custom_labels,
        ProjectVersionArn=arn("slow"),
        Image={"Bytes": b"xx"},
    )
    await expect(
        gw,
        "ProvisionedThroughputExceededException",
        client.detect_custom_labels,
        ProjectVersionArn=arn("slow"),
        Image={"Bytes": png()},
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.internal_url + "/metrics") as response:
            text = await response.text()
        async with session.get(
            gw.internal_url + "/metrics?name[]=kiu_gateway_demand_total"
        ) as response:
            demand_only = await response.text()
    model = {"namespace": NAMESPACE, "projectversion": "slow"}
    values = samples(text)
    assert values["kiu_gateway_demand_total", key(model)] == 3
    for outcome, count in (("success", 1), ("user_error", 1), ("throttled", 1)):
        labels = {**model, "operation": "DetectCustomLabels", "outcome": outcome}
        assert values["kiu_gateway_requests_total", key(labels)] == count
    assert values["kiu_gateway_tps_limit", key(model)] == 0.5
    assert values["kiu_gateway_ready_units", key(model)] == 1
    assert values["kiu_gateway_model_request_duration_seconds_count", key(model)] == 3
    top = {**model, "le": "+Inf"}
    assert values["kiu_gateway_model_request_duration_seconds_bucket", key(top)] == 3
    assert any(name == "kiu_gateway_request_duration_seconds_bucket" for name, _ in values)
    assert not any(name.endswith("_created") for name, _ in values)
    assert ("kiu_gateway_demand_total", key({"namespace": "", "projectversion": ""})) not in values
    only = samples(demand_only)
    assert {name for name, _ in only} == {"kiu_gateway_demand_total"}
    assert only["kiu_gateway_demand_total", key(model)] == 3


def key(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, key(sample.labels)): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_health_and_readiness(local: Any) -> None:
    gw = await local(directory([version("shoes-v3")]))
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(gw.internal_url + path) as response:
                assert response.status == 200
    gw.gateway.draining = True
    async with (
        aiohttp.ClientSession() as session,
        session.get(gw.internal_url + "/readyz") as response,
    ):
        assert response.status == 503
    gw.gateway.draining = False


async def test_metrics_and_probes_are_not_served_on_the_api_port(local: Any) -> None:
    gw = await local(directory([version("shoes-v3")]))
    assert gw.port != gw.gateway.internal_port
    async with aiohttp.ClientSession() as session:
        for path in ("/metrics", "/healthz", "/readyz", "/peers/v1/offered"):
            async with session.get(gw.url + path) as response:
                assert response.status == 404, path
                assert (await response.json(content_type=None))[
                    "__type"
                ] == "UnknownOperationException"
            async with session.get(gw.internal_url + path) as response:
                assert response.status == 200, path


async def test_unit_leaving_the_directory_leaves_routing_at_once(local: Any) -> None:
    two = [("127.0.0.1", 1, "a"), ("127.0.0.1", 2, "b")]
    gw = await local(directory([version("shoes-v3", units=two, tps=50)]))
    entry = gw.gateway.catalog.get(NAMESPACE, "shoes-v3")
    assert entry is not None
    assert entry.bucket.rate == 100
    await gw.reload(directory([version("shoes-v3", units=two[:1], tps=50)]))
    assert entry.bucket.rate == 50
    assert [u.endpoint.port for u in entry.pool.units] == [1]
    await gw.reload(directory([version("shoes-v3", units=[], tps=50)]))
    await expect(
        gw,
        "ResourceNotReadyException",
        gw.client().detect_custom_labels,
        ProjectVersionArn=arn("shoes-v3"),
        Image={"Bytes": png()},
    )
    unready = [{"address": "127.0.0.1", "grpcPort": 3, "zone": "a", "ready": False}]
    await gw.reload(directory([{**version("shoes-v3"), "units": unready}]))
    assert len(entry.pool) == 0


async def test_replicas_share_the_limit(local: Any) -> None:
    gw = await local(directory([version("shoes-v3", tps=30)], replicas=3))
    entry = gw.gateway.catalog.get(NAMESPACE, "shoes-v3")
    assert entry is not None
    assert entry.tps_limit == 30
    assert entry.bucket.rate == 10


async def test_signed_with_a_real_key_but_of_another_gateway_namespace(local: Any) -> None:
    keys = [{"accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY, "namespaces": ["*"]}]
    gw = await local(directory([version("elsewhere", namespace="other")], keys=keys))
    answer = await gw.call(
        gw.client().detect_custom_labels,
        ProjectVersionArn=arn("elsewhere", namespace="other"),
        Image={"Bytes": png()},
    )
    assert answer["CustomLabels"]
