"""`kiu unit` on an s3:// repository: a real S3-compatible store (moto, signatures checked)
holding the bundled models, read with the key the operator would pass from the Secret."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiu.unit import mirror
from tests.gateway import processes

from .expected import REPOSITORY, check, images, summary
from .test_server import _http_input, _outputs, start_unit

BUCKET = "models"
PREFIX = "team/triton"
MODEL = "shapes-classifier"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.ObjectStore]:
    with processes.object_store(tmp_path_factory.mktemp("moto")) as running:
        running.s3().create_bucket(Bucket=BUCKET)
        running.upload(REPOSITORY, BUCKET, PREFIX)
        yield running


def _uri(store: processes.ObjectStore, bucket: str = BUCKET, prefix: str = PREFIX) -> str:
    return f"s3://{store.endpoint.removeprefix('http://')}/{bucket}/{prefix}"


def test_the_unit_serves_a_model_copied_from_s3(
    store: processes.ObjectStore, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    unit = start_unit(
        MODEL,
        tmp_path / "unit.log",
        repository=_uri(store),
        env={**store.environment(), "TRITON_AWS_MOUNT_DIRECTORY": str(cache)},
    )
    try:
        client = unit.http_client()
        results = []
        for image in images(MODEL):
            result = client.infer(MODEL, [_http_input([image])])
            results.append(summary(_outputs(result, MODEL), 0))
        check(MODEL, results)
    finally:
        assert unit.stop() == 0, unit.log.read_text()
    # the ensemble and the steps it names, nothing of the repository's other models
    assert sorted(p.name for p in cache.iterdir()) == [
        MODEL, f"{MODEL}-onnx", f"{MODEL}-postprocess", f"{MODEL}-preprocess"
    ]  # fmt: skip
    copied = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
    shipped = sorted(
        str(p.relative_to(REPOSITORY))
        for p in REPOSITORY.glob(f"{MODEL}*/**/*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert copied == shipped


def _exits(uri: str, env: dict[str, str], tmp_path: Path) -> str:
    """The unit's exit on `uri`: non-zero, and its last line."""
    done = subprocess.run(
        [sys.executable, "-m", "kiu", "unit", "--model-repository", uri, "--model", MODEL],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PATH": "/usr/bin:/bin", "TRITON_AWS_MOUNT_DIRECTORY": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 1, done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_a_missing_bucket_ends_the_unit_with_the_stores_error(
    store: processes.ObjectStore, tmp_path: Path
) -> None:
    uri = _uri(store, bucket="no-such-bucket")
    assert _exits(uri, store.environment(), tmp_path) == (
        f"kiu unit: cannot copy model {MODEL!r} from {uri}: "
        "NoSuchBucket: The specified bucket does not exist"
    )


def test_a_missing_model_ends_the_unit_naming_what_is_missing(
    store: processes.ObjectStore, tmp_path: Path
) -> None:
    uri = _uri(store, prefix="elsewhere")
    assert _exits(uri, store.environment(), tmp_path) == (
        f"kiu unit: cannot copy model {MODEL!r} from {uri}: "
        f"no model {MODEL!r}: nothing under elsewhere/{MODEL}/"
    )


def test_a_wrong_key_ends_the_unit_with_the_refusal(
    store: processes.ObjectStore, tmp_path: Path
) -> None:
    env = {**store.environment(), "AWS_SECRET_ACCESS_KEY": "wrong"}
    last = _exits(_uri(store), env, tmp_path)
    assert last.startswith(f"kiu unit: cannot copy model {MODEL!r} from {_uri(store)}: ")
    assert "SignatureDoesNotMatch" in last


def test_an_unreachable_store_ends_the_unit_naming_it(
    store: processes.ObjectStore, tmp_path: Path
) -> None:
    port = processes.free_port()
    uri = f"s3://127.0.0.1:{port}/{BUCKET}/{PREFIX}"
    last = _exits(uri, store.environment(), tmp_path)
    assert last.startswith(
        f"kiu unit: cannot copy model {MODEL!r} from {uri}: cannot reach http://127.0.0.1:{port}:"
    )


@pytest.mark.parametrize(
    ("uri", "location"),
    [
        ("s3://bucket/a/b/", mirror.Location("s3://bucket/a/b/", "bucket", "a/b")),
        ("s3://bucket", mirror.Location("s3://bucket", "bucket", "")),
        (
            "s3://minio.storage:9000/bucket/a",
            mirror.Location(
                "s3://minio.storage:9000/bucket/a", "bucket", "a", "http://minio.storage:9000"
            ),
        ),
        (
            "s3://https://10.0.0.5:443/bucket",
            mirror.Location(
                "s3://https://10.0.0.5:443/bucket", "bucket", "", "https://10.0.0.5:443"
            ),
        ),
        (
            "s3://http://host:80/b/p",
            mirror.Location("s3://http://host:80/b/p", "b", "p", "http://host:80"),
        ),
    ],
)
def test_uris_take_tritons_forms(uri: str, location: mirror.Location) -> None:
    assert mirror.parse(uri) == location


@pytest.mark.parametrize("uri", ["s3://", "s3://host:9000/", "s3://https://host/bucket"])
def test_uris_without_a_bucket_or_port_are_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="s3://"):
        mirror.parse(uri)
