"""Fixtures: directory files, in-process gateways over fake units, boto3 clients."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from PIL import Image

from kiu.gateway import auth, command, server

from . import processes, tally
from .fakes import FakeTransport
from .signing import ACCESS_KEY, SECRET_KEY

NAMESPACE = "retail"
PROJECT = "shoes"
CREATED = 1_700_000_000_000


def arn(
    name: str, created: int = CREATED, *, namespace: str = NAMESPACE, project: str = PROJECT
) -> str:
    return (
        f"arn:kiu:rekognition:{namespace}:000000000000:project/{project}/version/{name}/{created}"
    )


def project_arn(project: str = PROJECT, *, namespace: str = NAMESPACE) -> str:
    return f"arn:kiu:rekognition:{namespace}:000000000000:project/{project}/1"


def png(width: int = 128, height: int = 96, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def version(
    name: str,
    *,
    units: list[tuple[str, int, str]] | None = None,
    created: int = CREATED,
    **fields: Any,
) -> dict[str, Any]:
    """A projectVersions entry of a directory file."""
    entry: dict[str, Any] = {
        "namespace": NAMESPACE,
        "name": name,
        "project": PROJECT,
        "createdMs": created,
        "model": "shapes-classifier",
        "tps": 50,
        "units": [
            {"address": host, "grpcPort": port, "zone": zone}
            for host, port, zone in (units if units is not None else [("127.0.0.1", 1, "a")])
        ],
    }
    entry.update(fields)
    return entry


def directory(
    versions: list[dict[str, Any]],
    *,
    keys: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "accessKeys": keys
        if keys is not None
        else [
            {"accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY, "namespaces": [NAMESPACE]}
        ],
        "projectVersions": versions,
        **extra,
    }


def write(path: Path, content: dict[str, Any]) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(yaml.safe_dump(content))
    staging.replace(path)


def rekognition(
    port: int,
    *,
    key: str = ACCESS_KEY,
    secret: str = SECRET_KEY,
    attempts: int = 1,
    verify: str | bool | None = None,
) -> Any:
    """A boto3 client; with ``verify`` (a CA bundle, or True for the system's) over HTTPS."""
    return boto3.session.Session().client(
        "rekognition",
        endpoint_url=f"{'http' if verify is None else 'https'}://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        verify=verify,
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
    )


class Local:
    """An in-process gateway over fake units."""

    def __init__(self, gateway: server.Gateway, path: Path, transport: FakeTransport) -> None:
        self.gateway = gateway
        self.path = path
        self.transport = transport

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str:
        """Health, readiness and /metrics."""
        return f"http://127.0.0.1:{self.gateway.internal_port}"

    def client(self, **options: Any) -> Any:
        return rekognition(self.port, **options)

    async def call(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        """A blocking boto3 call, run beside the gateway's event loop."""
        return await asyncio.to_thread(fn, **kwargs)

    async def reload(self, content: dict[str, Any]) -> None:
        write(self.path, content)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if self.gateway.catalog.synced and self._matches(content):
                return
        raise AssertionError("the gateway did not reload the directory file")

    def _matches(self, content: dict[str, Any]) -> bool:
        names = {(v["namespace"], v["name"]) for v in content["projectVersions"]}
        have = {(e.spec.namespace, e.spec.name) for e in self.gateway.catalog.entries()}
        if names != have:
            return False
        for v in content["projectVersions"]:
            entry = self.gateway.catalog.get(v["namespace"], v["name"])
            ready = [u for u in v.get("units", []) if u.get("ready", True)]
            if entry is None or len(entry.pool) != len(ready):
                return False
        return True


LocalFactory = Callable[..., "asyncio.Future[Local]"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fuzz tests' counts of inputs tried and refused, when they ran."""
    counted = tally.lines()
    if counted:
        terminalreporter.section("bad inputs tried and refused")
        for line in counted:
            terminalreporter.write_line(line)


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process gateways: ``await local(directory_content, *options)``."""
    started: list[server.Gateway] = []

    async def start(
        content: dict[str, Any],
        *args: str,
        tokens: auth.TokenReviewer | None = None,
    ) -> Local:
        path = tmp_path / f"directory-{len(started)}.yaml"
        write(path, content)
        options = command.parser().parse_args(
            [
                *("--directory", str(path), "--host", "127.0.0.1", "--zone", "a"),
                *("--port", "0", "--internal-port", "0", *args),
            ]
        )
        transport = FakeTransport()
        gateway, _ = await command.build(options, transport=transport, tokens=tokens)
        await gateway.start()
        started.append(gateway)
        return Local(gateway, path, transport)

    yield start
    for gateway in started:
        await gateway.stop()


@pytest.fixture(scope="session")
def real_units(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, list[processes.Unit]]]:
    """Real `kiu unit` processes on loopback: classifiers in zones a, b, c and a detector."""
    logs = tmp_path_factory.mktemp("units")
    specs = [
        ("shapes-classifier", "a"),
        ("shapes-classifier", "b"),
        ("shapes-classifier", "c"),
        ("shapes-detector", "a"),
    ]
    with processes.units(specs, logs) as started:
        yield {"classifier": started[:3], "detector": started[3:]}
