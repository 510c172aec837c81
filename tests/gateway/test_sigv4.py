"""SigV4 verification against botocore's signer, and signing that botocore agrees with."""

from __future__ import annotations

import calendar
import datetime
import hashlib
import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import normalize_url_path
from hypothesis import given
from hypothesis import strategies as st

from kiu import sigv4
from kiu.gateway import errors, verification

from .signing import ACCESS_KEY, SECRET_KEY, sign, signed_request

URL = "http://127.0.0.1:8080/"
REST_URL = (
    "http://gw.example:8080/v1/namespaces/retail/projectversions/shoes-v3:detect"
    "?minConfidence=50&maxResults=3"
)
BODY = b'{"ProjectVersionArn":"arn:kiu:rekognition:retail:000000000000:project/p/version/v/1"}'
KEYS = {ACCESS_KEY: sigv4.Credentials(ACCESS_KEY, SECRET_KEY)}


def verify(
    url: str, body: bytes, headers: dict[str, str], **options: object
) -> verification.Verified:
    return verification.verify(
        signed_request(url, body, headers),
        lookup=KEYS.get,
        now=options.pop("now", time.time()),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("url", [URL, REST_URL], ids=["aws-json", "rest"])
def test_botocore_signatures_verify(url: str) -> None:
    headers = sign(url=url, body=BODY, headers={"X-Amz-Target": "RekognitionService.Detect"})
    assert verify(url, BODY, headers).credentials.access_key_id == ACCESS_KEY


def test_changed_body_fails() -> None:
    headers = sign(url=URL, body=BODY)
    with pytest.raises(errors.InvalidSignature):
        verify(URL, BODY + b" ", headers)


def test_changed_signed_header_fails() -> None:
    headers = sign(url=URL, body=BODY, headers={"X-Amz-Target": "RekognitionService.A"})
    headers["X-Amz-Target"] = "RekognitionService.B"
    with pytest.raises(errors.InvalidSignature, match="does not match"):
        verify(URL, BODY, headers)


def test_changed_path_or_query_fails() -> None:
    headers = sign(url=REST_URL, body=BODY)
    with pytest.raises(errors.InvalidSignature):
        verify(REST_URL.replace("shoes-v3:detect", "boots:detect"), BODY, headers)
    with pytest.raises(errors.InvalidSignature):
        verify(REST_URL.replace("maxResults=3", "maxResults=4"), BODY, headers)


def test_wrong_secret_fails() -> None:
    headers = sign(url=URL, body=BODY, secret="not-the-secret")
    with pytest.raises(errors.InvalidSignature):
        verify(URL, BODY, headers)


def test_unknown_key_is_unrecognized() -> None:
    headers = sign(url=URL, body=BODY, key="AKIDUNKNOWN")
    with pytest.raises(errors.UnrecognizedClient):
        verify(URL, BODY, headers)


def test_missing_authorization() -> None:
    with pytest.raises(errors.MissingAuthenticationToken):
        verify(URL, BODY, {"host": "127.0.0.1:8080"})


@pytest.mark.parametrize(
    "value",
    [
        "Basic dXNlcjpwYXNz",
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/rekognition/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/r/s/aws4_request, "
        "SignedHeaders=x;host, Signature=0",
        "AWS4-HMAC-SHA256 garbage",
    ],
)
def test_malformed_authorization_is_incomplete(value: str) -> None:
    headers = sign(url=URL, body=BODY)
    headers["Authorization"] = value
    with pytest.raises(errors.IncompleteSignature):
        verify(URL, BODY, headers)


@pytest.mark.parametrize("minutes", [-6, 6])
def test_outside_the_clock_window_is_expired(minutes: int) -> None:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)
    headers = sign(url=URL, body=BODY, when=when)
    with pytest.raises(errors.InvalidSignature, match="Signature expired"):
        verify(URL, BODY, headers)
    assert verify(URL, BODY, headers, max_skew=600.0).credentials.access_key_id == ACCESS_KEY


def test_service_must_be_rekognition() -> None:
    headers = sign(url=URL, body=BODY, service="s3")
    with pytest.raises(errors.InvalidSignature, match="rekognition"):
        verify(URL, BODY, headers)


def test_replay_guard_remembers_signatures_until_forgotten() -> None:
    guard = verification.ReplayGuard()
    assert guard.admit(signature="ab" * 32, signed_at=100.0, now=100.0)
    assert not guard.admit(signature="ab" * 32, signed_at=100.0, now=100.0)
    assert guard.admit(signature="cd" * 32, signed_at=100.0, now=100.0)
    guard.forget(signature="ab" * 32, signed_at=100.0)
    assert len(guard) == 1
    assert guard.admit(signature="ab" * 32, signed_at=100.0, now=100.0)


def test_replay_guard_memory_is_bounded_and_never_readmits() -> None:
    guard = verification.ReplayGuard(window=300, capacity=100)
    now = 1_000_000.0
    accepted = []
    for i in range(1000):
        second = now - 200 + i // 10  # ten requests per second over 100 seconds
        signature = hashlib.sha256(str(i).encode()).hexdigest()
        if guard.admit(signature=signature, signed_at=second, now=now):
            accepted.append((signature, second))
        assert len(guard) <= 100
    assert len(accepted) == 1000
    # Everything accepted, old or recent, is refused the second time.
    assert not any(guard.admit(signature=s, signed_at=t, now=now) for s, t in accepted)


def test_replay_guard_expires_old_seconds() -> None:
    guard = verification.ReplayGuard(window=10)
    guard.admit(signature="a" * 64, signed_at=100.0, now=100.0)
    guard.admit(signature="b" * 64, signed_at=200.0, now=200.0)
    assert len(guard) == 1


def test_signer_matches_botocore_s3() -> None:
    now = 1_700_000_000.0
    credentials = sigv4.Credentials("AKIDS3", "s3secret")
    path = "/bucket/photos/a%20b%2Bc.png"
    headers = sigv4.sign(
        method="GET",
        host="127.0.0.1:9000",
        path=path,
        query="versionId=v%201",
        credentials=credentials,
        region="us-east-1",
        service="s3",
        now=now,
        double_encode=False,
    )
    request = AWSRequest(method="GET", url=f"http://127.0.0.1:9000{path}?versionId=v%201")
    request.headers["x-amz-content-sha256"] = sigv4.EMPTY_SHA256
    request.context["timestamp"] = sigv4.amz_date(now)
    signer = S3SigV4Auth(Credentials("AKIDS3", "s3secret"), "s3", "us-east-1")
    with pytest.MonkeyPatch.context() as patch:
        naive = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
        patch.setattr("botocore.auth.get_current_datetime", lambda: naive)
        signer.add_auth(request)
    assert headers["authorization"] == request.headers["Authorization"]


def test_sign_then_verify_round_trip() -> None:
    now = time.time()
    url = "http://h:1/v1/namespaces/a/projectversions/b:detect?x=1&a=%2F"
    parts = urlsplit(url)
    headers = sigv4.sign(
        method="POST",
        host=parts.netloc,
        path=parts.path,
        query=parts.query,
        payload_sha256=hashlib.sha256(BODY).hexdigest(),
        credentials=KEYS[ACCESS_KEY],
        region="x",
        service="rekognition",
        now=now,
    )
    assert verify(url, BODY, headers, now=now).credentials.access_key_id == ACCESS_KEY


@pytest.mark.parametrize(
    ("path", "normalized"),
    [("", "/"), ("/", "/"), ("/a/./b/../c", "/a/c"), ("//a//b/", "/a/b/"), ("/..", "/")],
)
def test_path_normalization_matches_botocore(path: str, normalized: str) -> None:
    assert sigv4.normalize_path(path) == normalized == normalize_url_path(path)


@given(
    st.integers(0, 10_000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 62),
)
def test_amz_date_reads_as_strptime_does(
    year: int, month: int, day: int, hour: int, minute: int, second: int
) -> None:
    value = f"{year:04d}{month:02d}{day:02d}T{hour:02d}{minute:02d}{second:02d}Z"
    try:
        expected: float | None = float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        expected = None
    try:
        got: float | None = sigv4.parse_amz_date(value)
    except ValueError:
        got = None
    assert got == expected
