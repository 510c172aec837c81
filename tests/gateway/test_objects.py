"""Image.S3Object against a real S3-compatible server (moto in server mode, auth enforced)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from kiu.imaging import scenes

from . import processes
from .conftest import arn, directory, png, rekognition, version, write

BUCKET = "photos"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Any]]:
    """A moto server that checks signatures after the first five (set-up) calls."""
    logs = tmp_path_factory.mktemp("moto")
    port = processes.free_port()
    server = processes.Process(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", processes.HOST, "-p", str(port)],
        logs / "moto.log",
        env={"INITIAL_NO_AUTH_ACTION_COUNT": "5"},
    ).start()
    endpoint = f"http://{processes.HOST}:{port}"
    try:
        processes.wait_until(
            lambda: processes.http_ok(f"{endpoint}/moto-api/"),
            timeout=60,
            what="moto",
            process=server,
        )
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        anonymous = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **setup, **anonymous)
        iam.create_user(UserName="gateway")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="gateway", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="gateway")["AccessKey"]
        credentials = {"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}
        s3 = boto3.client("s3", **setup, **anonymous)
        s3.create_bucket(Bucket=BUCKET)
        # from here on moto checks every signature
        s3 = boto3.client(
            "s3",
            **setup,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        yield endpoint, credentials, s3
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway_with_store(
    store: tuple[str, dict[str, str], Any],
    real_units: dict[str, list[processes.Unit]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[processes.Gateway, Path, dict[str, Any]]]:
    endpoint, credentials, _ = store
    logs = tmp_path_factory.mktemp("gateway-s3")
    path = logs / "directory.yaml"
    content = directory([version("shoes-v3", units=[], tps=100)], objectStore=credentials)
    content["projectVersions"][0]["units"] = [real_units["classifier"][0].entry()]
    write(path, content)
    with processes.gateway(path, logs, "--s3-endpoint", endpoint) as gw:
        yield gw, path, content


def detect(gw: processes.Gateway, name: str, **image: str) -> Any:
    return rekognition(gw.port).detect_custom_labels(
        ProjectVersionArn=arn("shoes-v3"),
        Image={"S3Object": {"Bucket": BUCKET, "Name": name, **image}},
    )


def error(gw: processes.Gateway, name: str) -> str:
    with pytest.raises(ClientError) as caught:
        detect(gw, name)
    return str(caught.value.response["Error"]["Code"])


def test_image_from_object_storage(store: Any, gateway_with_store: Any) -> None:
    scene = next(scenes.scenes("classification", seed=31, count=1))
    store[2].put_object(Bucket=BUCKET, Key="incoming/cam 1/frame+1.png", Body=scene.image)
    labels = detect(gateway_with_store[0], "incoming/cam 1/frame+1.png")["CustomLabels"]
    assert labels[0]["Name"] == scene.objects[0].label


def test_missing_object_is_invalid_s3_object(gateway_with_store: Any) -> None:
    assert error(gateway_with_store[0], "no/such/key.png") == "InvalidS3ObjectException"


def test_object_over_15_mb_is_too_large(store: Any, gateway_with_store: Any) -> None:
    store[2].put_object(Bucket=BUCKET, Key="huge.png", Body=png() + b"\0" * (15 * 1024 * 1024))
    assert error(gateway_with_store[0], "huge.png") == "ImageTooLargeException"


def test_object_that_is_not_an_image(store: Any, gateway_with_store: Any) -> None:
    store[2].put_object(Bucket=BUCKET, Key="notes.txt", Body=b"hello" * 100)
    assert error(gateway_with_store[0], "notes.txt") == "InvalidImageFormatException"


def test_refused_credentials_make_the_object_unreadable(
    store: Any, gateway_with_store: Any
) -> None:
    gw, path, content = gateway_with_store
    scene = next(scenes.scenes("classification", seed=32, count=1))
    store[2].put_object(Bucket=BUCKET, Key="ok.png", Body=scene.image)
    wrong = {**content, "objectStore": {**content["objectStore"], "secretAccessKey": "wrong"}}
    write(path, wrong)
    try:
        processes.wait_until(
            lambda: _code(gw, "ok.png") == "InvalidS3ObjectException", timeout=10, what="the reload"
        )
    finally:
        write(path, content)
    processes.wait_until(lambda: _code(gw, "ok.png") == "ok", timeout=10, what="the restore")


def _code(gw: processes.Gateway, name: str) -> str:
    try:
        detect(gw, name)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"
