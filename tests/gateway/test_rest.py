"""The native REST API: raw or JSON bodies; SigV4, Kubernetes bearer tokens, anonymous."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest

from .clients import Reviewer
from .conftest import NAMESPACE, directory, png, version
from .signing import sign

PATH = f"/v1/namespaces/{NAMESPACE}/projectversions/shoes-v3:detect"


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, json.loads(await response.read())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
async def test_raw_image_body_signed_with_sigv4(local: Any, fmt: str) -> None:
    gw = await local(directory([version("shoes-v3")]))
    url = gw.url + PATH + "?minConfidence=30&maxResults=2"
    image = png(fmt=fmt)
    content_type = "image/png" if fmt == "PNG" else "image/jpeg"
    status, answer = await post(
        url, image, sign(url=url, body=image, headers={"Content-Type": content_type})
    )
    assert status == 200
    assert answer == {
        "CustomLabels": [
            {"Name": "circle", "Confidence": 91.5},
            {"Name": "square", "Confidence": 40.0},
        ]
    }


async def test_json_body_takes_the_reference_shape(local: Any) -> None:
    gw = await local(directory([version("shoes-v3")]))
    url = gw.url + PATH
    body = json.dumps(
        {"Image": {"Bytes": base64.b64encode(png()).decode()}, "MaxResults": 1}
    ).encode()
    status, answer = await post(
        url, body, sign(url=url, body=body, headers={"Content-Type": "application/json"})
    )
    assert status == 200
    assert [label["Name"] for label in answer["CustomLabels"]] == ["circle"]


@pytest.mark.parametrize(
    ("query", "content_type", "error"),
    [
        ("?minConfidence=abc", "image/png", "InvalidParameterException"),
        ("?minConfidence=101", "image/png", "InvalidParameterException"),
        ("?maxResults=-1", "image/png", "InvalidParameterException"),
        ("", "text/plain", "InvalidParameterException"),
    ],
)
async def test_bad_options(local: Any, query: str, content_type: str, error: str) -> None:
    gw = await local(directory([version("shoes-v3")]))
    url = gw.url + PATH + query
    image = png()
    status, answer = await post(
        url, image, sign(url=url, body=image, headers={"Content-Type": content_type})
    )
    assert (status, answer["__type"]) == (400, error)


async def test_bearer_tokens_are_reviewed_and_authorized_with_caching(local: Any) -> None:
    reviewer = Reviewer()
    gw = await local(directory([version("shoes-v3")]), tokens=reviewer)
    url = gw.url + PATH
    image = png()
    for _ in range(3):
        status, answer = await post(
            url, image, {"Authorization": "Bearer alice-token", "Content-Type": "image/png"}
        )
        assert status == 200, answer
    assert reviewer.reviews == 1
    assert reviewer.decisions == [("alice", NAMESPACE, "shoes-v3", "invoke")]
    status, answer = await post(
        url, image, {"Authorization": "Bearer bob-token", "Content-Type": "image/png"}
    )
    assert (status, answer["__type"]) == (400, "AccessDeniedException")
    status, answer = await post(
        url, image, {"Authorization": "Bearer forged", "Content-Type": "image/png"}
    )
    assert (status, answer["__type"]) == (400, "UnrecognizedClientException")


async def test_bearer_tokens_are_not_accepted_by_the_aws_json_api(local: Any) -> None:
    gw = await local(directory([version("shoes-v3")]), tokens=Reviewer())
    headers = {
        "Authorization": "Bearer alice-token",
        "X-Amz-Target": "RekognitionService.DescribeProjectVersions",
    }
    status, answer = await post(gw.url + "/", b"{}", headers)
    assert (status, answer["__type"]) == (400, "IncompleteSignatureException")


async def test_anonymous_only_when_allowed(local: Any) -> None:
    closed = await local(directory([version("shoes-v3")]))
    status, answer = await post(closed.url + PATH, png(), {"Content-Type": "image/png"})
    assert (status, answer["__type"]) == (403, "MissingAuthenticationTokenException")
    opened = await local(directory([version("shoes-v3")]), "--allow-anonymous")
    status, answer = await post(opened.url + PATH, png(), {"Content-Type": "image/png"})
    assert status == 200


async def test_unknown_model_on_the_path(local: Any) -> None:
    gw = await local(directory([version("shoes-v3")]), "--allow-anonymous")
    url = gw.url + PATH.replace("shoes-v3", "other")
    status, answer = await post(url, png(), {"Content-Type": "image/png"})
    assert (status, answer["__type"]) == (400, "ResourceNotFoundException")
