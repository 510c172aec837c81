"""Image.S3Object against a real S3-compatible server (moto in server mode, auth enforced)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from kiu.gateway import errors, grants
from kiu.imaging import scenes

from . import processes
from .conftest import NAMESPACE, arn, directory, png, rekognition, version, write
from .signing import ACCESS_KEY, SECRET_KEY

BUCKET = "photos"
GARDEN = "garden"
GARDEN_KEY = "AKIDKIUGARDEN"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Any]]:
    """A moto server that checks every signature; the gateway-wide credentials, an S3
    client with them, and the garden namespace's own credentials."""
    logs = tmp_path_factory.mktemp("moto")
    with processes.object_stores(logs, users=("gateway", GARDEN)) as stores:
        gateway, garden = stores["gateway"], stores[GARDEN]
        s3 = gateway.s3()
        s3.create_bucket(Bucket=BUCKET)
        yield gateway.endpoint, _directory_keys(gateway), s3, _directory_keys(garden)


def _directory_keys(store: processes.ObjectStore) -> dict[str, str]:
    """A store user's key as the directory file names it."""
    return {"accessKeyId": store.access_key_id, "secretAccessKey": store.secret_access_key}


@pytest.fixture(scope="module")
def gateway_with_store(
    store: tuple[str, dict[str, str], Any],
    real_units: dict[str, list[processes.Unit]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[processes.Gateway, Path, dict[str, Any]]]:
    endpoint, credentials, _, _ = store
    logs = tmp_path_factory.mktemp("gateway-s3")
    path = logs / "directory.yaml"
    unit = real_units["classifier"][0].entry()
    content = directory(
        [
            version("shoes-v3", units=[], tps=100),
            version("roses-v1", units=[], tps=100, namespace=GARDEN),
        ],
        keys=[
            {"accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY, "namespaces": [NAMESPACE]},
            {"accessKeyId": GARDEN_KEY, "secretAccessKey": SECRET_KEY, "namespaces": [GARDEN]},
        ],
        objectStore=credentials,
    )
    for entry in content["projectVersions"]:
        entry["units"] = [unit]
    write(path, content)
    grants = ["--s3-allow", f"{NAMESPACE}={BUCKET}", "--s3-allow", f"{GARDEN}={BUCKET}/garden/"]
    with processes.gateway(path, logs, "--s3-endpoint", endpoint, *grants) as gw:
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


def test_objects_outside_the_namespace_grant_are_refused_alike(
    store: Any, gateway_with_store: Any
) -> None:
    """The garden namespace may read photos/garden/ only: whether an object outside exists
    or not, the answer is the same refusal, given before anything is read."""
    gw = gateway_with_store[0]
    scene = next(scenes.scenes("classification", seed=33, count=1))
    store[2].put_object(Bucket=BUCKET, Key="garden/rose.png", Body=scene.image)
    store[2].put_object(Bucket=BUCKET, Key="retail/private.png", Body=scene.image)
    garden = rekognition(gw.port, key=GARDEN_KEY)

    def detect_garden(bucket: str, name: str) -> Any:
        return garden.detect_custom_labels(
            ProjectVersionArn=arn("roses-v1", namespace=GARDEN),
            Image={"S3Object": {"Bucket": bucket, "Name": name}},
        )

    assert detect_garden(BUCKET, "garden/rose.png")["CustomLabels"]
    refusals = []
    for bucket, name in [
        (BUCKET, "retail/private.png"),  # exists
        (BUCKET, "retail/missing.png"),  # does not
        (BUCKET, "garden/../retail/private.png"),
        ("another-bucket", "garden/rose.png"),
    ]:
        with pytest.raises(ClientError) as caught:
            detect_garden(bucket, name)
        response = caught.value.response
        refusals.append((response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]))
        assert "garden" in response["Error"]["Message"]
    assert set(refusals) == {("AccessDeniedException", 400)}
    # the retail models, granted the whole bucket, still read what is theirs
    assert detect(gw, "retail/private.png")["CustomLabels"]


def test_a_namespace_reads_with_its_own_credentials(store: Any, gateway_with_store: Any) -> None:
    """objectStores gives garden its own credentials: they, not the gateway-wide ones,
    read its objects; without the gateway-wide default, other namespaces read nothing."""
    gw, path, content = gateway_with_store
    scene = next(scenes.scenes("classification", seed=34, count=1))
    store[2].put_object(Bucket=BUCKET, Key="garden/tulip.png", Body=scene.image)
    store[2].put_object(Bucket=BUCKET, Key="retail/shoe.png", Body=scene.image)
    garden = rekognition(gw.port, key=GARDEN_KEY)

    def codes() -> tuple[str, str]:
        outcomes = []
        for client, name, namespace, model in (
            (garden, "garden/tulip.png", GARDEN, "roses-v1"),
            (rekognition(gw.port), "retail/shoe.png", NAMESPACE, "shoes-v3"),
        ):
            try:
                client.detect_custom_labels(
                    ProjectVersionArn=arn(model, namespace=namespace),
                    Image={"S3Object": {"Bucket": BUCKET, "Name": name}},
                )
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(str(exc.response["Error"]["Code"]))
        return outcomes[0], outcomes[1]

    wrong = {**store[3], "secretAccessKey": "wrong"}
    cases = [
        ({**content, "objectStores": {GARDEN: wrong}}, ("InvalidS3ObjectException", "ok")),
        ({**content, "objectStores": {GARDEN: store[3]}}, ("ok", "ok")),
        (
            {
                **{k: v for k, v in content.items() if k != "objectStore"},
                "objectStores": {GARDEN: store[3]},
            },
            ("ok", "InvalidS3ObjectException"),
        ),
    ]
    try:
        for changed, expected in cases:
            write(path, changed)
            processes.wait_until(lambda e=expected: codes() == e, timeout=10, what=str(expected))
    finally:
        write(path, content)
    processes.wait_until(lambda: codes() == ("ok", "ok"), timeout=10, what="the restore")


def _code(gw: processes.Gateway, name: str) -> str:
    try:
        detect(gw, name)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_grants_parse_and_cover() -> None:
    allowed = grants.Grants.parse(["a=photos/a/", "a=shared", "b=photos/b/"])
    allowed.check(namespace="a", bucket="photos", name="a/x.png")
    allowed.check(namespace="a", bucket="shared", name="any/thing.png")
    for namespace, bucket, name in [
        ("a", "photos", "b/x.png"),
        ("a", "photos", "a/../b/x.png"),
        ("a", "photos", "a/./x.png"),
        ("b", "shared", "x.png"),
        ("c", "photos", "a/x.png"),
    ]:
        with pytest.raises(errors.AccessDenied):
            allowed.check(namespace=namespace, bucket=bucket, name=name)
    for bad in ["photos/a/", "a=", "=photos"]:
        with pytest.raises(ValueError, match="NAMESPACE=BUCKET"):
            grants.Grants.parse([bad])
