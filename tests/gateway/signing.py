"""Requests signed by botocore itself, for tests of the verifier and the gateway."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from unittest import mock
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kiu.gateway import auth, verification

ACCESS_KEY = "AKIDKIUEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def sign(
    *,
    url: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    key: str = ACCESS_KEY,
    secret: str = SECRET_KEY,
    service: str = "rekognition",
    region: str = "us-east-1",
    when: datetime.datetime | None = None,
) -> dict[str, str]:
    """The headers botocore sends for a POST (Host included)."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers or {}))
    signer = SigV4Auth(Credentials(key, secret), service, region)
    if when is None:
        signer.add_auth(request)
    else:
        naive = when.astimezone(datetime.UTC).replace(tzinfo=None)
        with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
            signer.add_auth(request)
    out = dict(request.headers.items())
    out.setdefault("host", urlsplit(url).netloc)
    return out


def presented(url: str, body: bytes, headers: Mapping[str, str]) -> auth.Presented:
    """An incoming request as the server adapters present it."""
    parts = urlsplit(url)
    lower: dict[str, list[str]] = {}
    for name, value in headers.items():
        lower.setdefault(name.lower(), []).append(value)
    return auth.Presented(
        method="POST",
        path=parts.path or "/",
        query=parts.query,
        headers=lambda name: lower.get(name, []),
        body=body,
    )


def signed_request(url: str, body: bytes, headers: Mapping[str, str]) -> verification.SignedRequest:
    shown = presented(url, body, headers)
    return verification.SignedRequest(
        method=shown.method,
        path=shown.path,
        query=shown.query,
        headers=shown.headers,
        payload_sha256=hashlib.sha256(body).hexdigest(),
    )
