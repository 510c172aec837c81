"""Clients and fakes shared by the gateway tests that drive a `kiu gateway` process.

Raw HTTP for what boto3 cannot send (invalid JSON, oversized bodies), botocore's
signer for raw requests, and a fake token reviewer for the bearer-token path.
"""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path
from typing import Any

from kiu.gateway import auth

from . import processes
from .conftest import arn, directory, version, write
from .signing import sign


class Reviewer:
    """TokenReview and SubjectAccessReview as a fake API server answers them."""

    def __init__(self) -> None:
        self.reviews = 0
        self.decisions: list[tuple[str, str, str, str]] = []

    async def review(self, token: str) -> auth.Identity | None:
        self.reviews += 1
        users = {"alice-token": "alice", "bob-token": "bob"}
        return auth.Identity(username=users[token], groups=("dev",)) if token in users else None

    async def allowed(
        self, identity: auth.Identity, *, namespace: str, name: str, verb: str
    ) -> bool:
        self.decisions.append((identity.username, namespace, name, verb))
        return identity.username == "alice"


def serve(unit: processes.Unit, logs: Path, *args: str) -> Any:
    """A gateway process over ``unit`` serving ``shoes-v3`` (generous TPS)."""
    path = logs / "directory.yaml"
    content = directory([version("shoes-v3", units=[], tps=1000)])
    content["projectVersions"][0]["units"] = [unit.entry()]
    write(path, content)
    return processes.gateway(path, logs, *args)


def post(
    gw: processes.Gateway, body: bytes, headers: dict[str, str], path: str = "/"
) -> tuple[int, dict[str, Any]]:
    """One POST on a fresh connection; the status and the JSON answer."""
    connection = http.client.HTTPConnection(processes.HOST, gw.port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def target(operation: str) -> dict[str, str]:
    return {
        "X-Amz-Target": f"RekognitionService.{operation}",
        "Content-Type": "application/x-amz-json-1.1",
    }


def signed(gw: processes.Gateway, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    return sign(url=gw.url + "/", body=body, headers=headers)


def detect_body(image: bytes | str, **fields: Any) -> bytes:
    data = image if isinstance(image, str) else base64.b64encode(image).decode()
    return json.dumps(
        {"ProjectVersionArn": arn("shoes-v3"), "Image": {"Bytes": data}, **fields}
    ).encode()


def alive(gw: processes.Gateway) -> None:
    """The process still runs and answers."""
    assert gw.process.popen.poll() is None, gw.process.output()
    assert processes.http_ok(gw.internal_url + "/healthz")
    assert processes.answers(gw.url + "/")
