"""Authentication negatives end to end, and logs that hold no secret and no image.

SigV4 through a `kiu gateway` process (boto3 where it can send the case, botocore's
signer on raw HTTP otherwise); bearer tokens on the native REST API; then a
gateway logging at DEBUG with its access log is fed secrets, tokens and an image
with a recognisable pattern, successes and failures, and its output is searched.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image, PngImagePlugin

from kiu import sigv4
from kiu.gateway import auth, catalog, errors

from . import processes
from .clients import Reviewer, alive, detect_body, post, serve, signed, target
from .conftest import NAMESPACE, arn, directory, png, project_arn, rekognition, version
from .signing import ACCESS_KEY, SECRET_KEY, presented, sign

MINUTES_20 = datetime.timedelta(minutes=20)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[processes.Gateway, Path]]:
    """A unit and a gateway, both logging at DEBUG, the gateway with its access log."""
    logs = tmp_path_factory.mktemp("auth")
    with (
        processes.units([("shapes-classifier", "a")], logs, log_level="DEBUG") as (unit,),
        serve(unit, logs, "--log-level", "DEBUG", "--access-log") as gw,
    ):
        yield gw, logs


def outcome(error: ClientError) -> tuple[int, str]:
    response = error.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"secret": "not-the-secret"}, (400, "InvalidSignatureException")),
        ({"key": "AKIDNOBODYKNOWS"}, (400, "UnrecognizedClientException")),
    ],
    ids=["wrong-secret", "unknown-key"],
)
def test_boto3_with_bad_credentials(
    fleet: tuple[processes.Gateway, Path], options: dict[str, Any], expected: tuple[int, str]
) -> None:
    gw, _ = fleet
    with pytest.raises(ClientError) as caught:
        rekognition(gw.port, **options).detect_custom_labels(
            ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": png()}
        )
    assert outcome(caught.value) == expected
    alive(gw)


def _refused(gw: processes.Gateway, case: str) -> tuple[bytes, dict[str, str]]:
    """A request for ``case``, signed by botocore's signer for this gateway."""
    now = datetime.datetime.now(datetime.UTC)
    body = detect_body(png())
    headers = target("DetectCustomLabels")
    shift = {"old": -MINUTES_20, "future": MINUTES_20}.get(case, datetime.timedelta())
    signed_ = sign(url=gw.url + "/", body=body, headers=headers, when=now + shift)
    if case == "body-changed":
        body = body.replace(b"shoes-v3", b"shoes-v4")
    elif case == "malformed-authorization":
        signed_["Authorization"] = "AWS4-HMAC-SHA256 Credential=x"
    elif case == "bearer-on-aws-json":
        signed_["Authorization"] = "Bearer a-token"
    elif case == "unsigned":
        signed_ = headers
    return body, signed_


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("old", 400, "InvalidSignatureException"),
        ("future", 400, "InvalidSignatureException"),
        ("body-changed", 400, "InvalidSignatureException"),
        ("malformed-authorization", 400, "IncompleteSignatureException"),
        ("bearer-on-aws-json", 400, "IncompleteSignatureException"),
        ("unsigned", 403, "MissingAuthenticationTokenException"),
    ],
)
def test_signed_requests_that_must_be_refused(
    fleet: tuple[processes.Gateway, Path], case: str, status: int, error: str
) -> None:
    gw, _ = fleet
    body, headers = _refused(gw, case)
    code, answer = post(gw, body, headers)
    assert (code, answer["__type"]) == (status, error), answer
    if case in ("old", "future"):
        assert "Signature expired" in answer["message"]
    alive(gw)


@pytest.mark.parametrize(
    ("operation", "document"),
    [
        ("StopProjectVersion", {"ProjectVersionArn": arn("shoes-v3")}),
        ("StartProjectVersion", {"ProjectVersionArn": arn("shoes-v3"), "MinInferenceUnits": 1}),
    ],
)
def test_a_replayed_state_change_is_refused(
    fleet: tuple[processes.Gateway, Path], operation: str, document: dict[str, Any]
) -> None:
    gw, _ = fleet
    client = rekognition(gw.port)
    # botocore signs no nonce: the same call in the same second is the same signature
    time.sleep(1.1)
    if operation == "StartProjectVersion":
        client.stop_project_version(ProjectVersionArn=arn("shoes-v3"))
    body = json.dumps(document).encode()
    headers = signed(gw, body, target(operation))
    status, answer = post(gw, body, headers)
    assert status == 200, answer
    status, answer = post(gw, body, headers)
    assert (status, answer["__type"]) == (400, "InvalidSignatureException")
    assert "already been used" in answer["message"]
    if operation == "StopProjectVersion":
        client.start_project_version(ProjectVersionArn=arn("shoes-v3"), MinInferenceUnits=1)
    described = client.describe_project_versions(ProjectArn=project_arn())
    assert described["ProjectVersionDescriptions"][0]["Status"] == "RUNNING"


async def test_a_state_change_is_claimed_before_it_is_carried_out() -> None:
    """The check and the record are one step; only a server-side failure releases the claim."""
    keys = {ACCESS_KEY: catalog.AccessKey(sigv4.Credentials(ACCESS_KEY, SECRET_KEY), frozenset())}
    authenticator = auth.Authenticator(keys=keys.get)
    url = "http://127.0.0.1:1/"
    body = json.dumps({"ProjectVersionArn": arn("shoes-v3")}).encode()
    request = presented(url, body, sign(url=url, body=body, headers=target("StopProjectVersion")))
    principal = await authenticator.authenticate(request, once=True)
    # a parallel copy, before the first was carried out
    with pytest.raises(errors.InvalidSignature, match="already been used"):
        await authenticator.authenticate(request, once=True)
    with pytest.raises(errors.InternalServerError), authenticator.failed(principal):
        raise errors.InternalServerError()
    principal = await authenticator.authenticate(request, once=True)  # released: a retry
    with pytest.raises(errors.ResourceInUse), authenticator.failed(principal):
        raise errors.ResourceInUse("in use")
    with pytest.raises(errors.InvalidSignature, match="already been used"):
        await authenticator.authenticate(request, once=True)  # refused: its answer stands
    assert (await authenticator.authenticate(request)).name == ACCESS_KEY  # reads are not claimed


def test_bearer_tokens_need_a_gateway_connected_to_kubernetes(
    fleet: tuple[processes.Gateway, Path],
) -> None:
    gw, _ = fleet
    path = f"/v1/namespaces/{NAMESPACE}/projectversions/shoes-v3:detect"
    headers = {"Authorization": "Bearer some-token", "Content-Type": "image/png"}
    status, answer = post(gw, png(), headers, path)
    assert (status, answer["__type"]) == (400, "IncompleteSignatureException")


@pytest.mark.parametrize(
    ("authorization", "status", "error"),
    [
        (None, 403, "MissingAuthenticationTokenException"),
        ("Bearer forged-token", 400, "UnrecognizedClientException"),
        ("Bearer ", 400, "UnrecognizedClientException"),
        ("Bearer", 400, "UnrecognizedClientException"),
        ("bearer alice-token-but-longer", 400, "UnrecognizedClientException"),
        ("Basic YWxpY2U6c2VjcmV0", 400, "IncompleteSignatureException"),
        ("Token alice-token", 400, "IncompleteSignatureException"),
        ("Bearer bob-token", 400, "AccessDeniedException"),
    ],
    ids=["missing", "wrong", "empty", "no-token", "unknown", "basic", "other-scheme", "rbac"],
)
async def test_bearer_token_negatives_on_the_rest_api(
    local: Any, authorization: str | None, status: int, error: str
) -> None:
    import aiohttp

    gw = await local(directory([version("shoes-v3")]), tokens=Reviewer())
    headers = {"Content-Type": "image/png"}
    if authorization is not None:
        headers["Authorization"] = authorization
    url = f"{gw.url}/v1/namespaces/{NAMESPACE}/projectversions/shoes-v3:detect"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=png(), headers=headers) as response,
    ):
        answer = json.loads(await response.read())
    assert (response.status, answer["__type"]) == (status, error)
    assert gw.transport.calls == []


# --- what the logs hold --------------------------------------------------------------

PATTERN = "KIU-PRIVATE-PIXELS-0xC0FFEE"
BEARER = "eyJhbGciOiJSUzI1NiJ9.kiu-bearer-token-that-must-not-leak"


def marked_png() -> bytes:
    """A real PNG that carries a recognisable text chunk and noisy pixels."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", PATTERN * 4)
    image = Image.effect_noise((160, 120), 64).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def base64_runs(data: bytes, length: int = 16) -> set[str]:
    """Every ``length``-character run of the image's base64, at each byte alignment."""
    runs: set[str] = set()
    for shift in range(3):
        text = base64.b64encode(data[shift:]).decode()
        runs.update(text[i : i + length] for i in range(0, len(text) - length, 4))
    return runs


def test_no_log_line_holds_a_secret_a_token_a_signature_or_image_bytes(
    fleet: tuple[processes.Gateway, Path],
) -> None:
    gw, _ = fleet
    image = marked_png()
    client = rekognition(gw.port)
    assert client.detect_custom_labels(ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": image})
    signatures = []
    failures: list[tuple[bytes, dict[str, str]]] = []
    for body, extra in (
        (detect_body(image), {}),  # a success, sent raw so its signature is known
        (detect_body(image, MinConfidence="x"), {}),  # InvalidParameter
        (detect_body(b"GIF89a" + image), {}),  # InvalidImageFormat
        (detect_body(image)[:-7], {}),  # Serialization, image inside
        (detect_body(image), {"X-Amz-Target": "RekognitionService.Nope"}),  # UnknownOperation
    ):
        headers = signed(gw, body, {**target("DetectCustomLabels"), **extra})
        signatures.append(headers["Authorization"].rsplit("Signature=", 1)[1])
        failures.append((body, headers))
    wrong = sign(url=gw.url + "/", body=failures[0][0], headers=target("DetectCustomLabels"))
    wrong["Authorization"] = wrong["Authorization"][:-8] + "00000000"  # InvalidSignature
    signatures.append(wrong["Authorization"].rsplit("Signature=", 1)[1])
    failures.append((failures[0][0], wrong))
    failures.append((png(), {"Authorization": f"Bearer {BEARER}"}))  # IncompleteSignature
    statuses = [post(gw, body, headers)[0] for body, headers in failures]
    assert statuses == [200, 400, 400, 400, 400, 400, 400]
    with pytest.raises(ClientError):
        rekognition(gw.port, secret="wrong-" + SECRET_KEY).detect_custom_labels(
            ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": image}
        )

    logs = "".join(p.read_text(errors="replace") for p in fleet[1].glob("*.log"))
    assert " DEBUG " in logs  # the logs are as verbose as they get
    assert '"POST / HTTP/1.1" 400' in logs
    for secret in (SECRET_KEY, BEARER, PATTERN, *signatures):
        assert secret not in logs
    leaked = [run for run in base64_runs(image) if run in logs]
    assert leaked == []
