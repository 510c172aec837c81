"""Real processes on loopback for end-to-end tests: `kiu unit`, `kiu gateway`, moto.

Every process started here is stopped by the fixture that started it, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "triton-models"
HOST = "127.0.0.1"


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, process: Process | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            raise AssertionError(f"{what}: the process exited early:\n{process.output()}")
        if check():
            return
        time.sleep(0.1)
    if process is not None:
        # A process that never became ready is stopped here: nothing else holds it.
        process.stop()
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}:\n{process.output()}"
        )
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def answers(url: str) -> bool:
    """An HTTP answer of any status came back (the API port answers GET with an error)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] = field(init=False)

    def start(self) -> Process:
        self._out = self.log.open("wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **self.env},
        )
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signum)

    def stop(self, *, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._out.close()
        return int(self.popen.returncode)


@dataclass
class Unit:
    """A running `kiu unit`."""

    model: str
    zone: str
    grpc_port: int
    http_port: int
    metrics_port: int
    process: Process
    host: str = HOST

    def entry(self, *, ready: bool = True) -> dict[str, Any]:
        return {"address": self.host, "grpcPort": self.grpc_port, "zone": self.zone, "ready": ready}


def start_unit(
    model: str,
    zone: str,
    logs: Path,
    *,
    host: str = HOST,
    log_level: str = "WARNING",
    repository: Path = MODELS,
) -> Unit:
    grpc, http, metrics = free_port(host), free_port(host), free_port(host)
    process = Process(
        f"unit-{model}-{grpc}",
        [
            sys.executable,
            "-m",
            "kiu",
            "unit",
            "--model-repository",
            str(repository),
            "--model",
            model,
            "--host",
            host,
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            "--grace-period",
            "2",
            "--log-level",
            log_level,
        ],
        logs / f"unit-{grpc}.log",
    ).start()
    return Unit(model, zone, grpc, http, metrics, process, host)


def served(unit: Unit) -> int:
    """Requests the unit answered successfully, from its own metrics."""
    with urllib.request.urlopen(
        f"http://{unit.host}:{unit.metrics_port}/metrics", timeout=5
    ) as response:
        text = response.read().decode()
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "kiu_unit_requests_total"
            and sample.labels.get("outcome") == "success"
        )
    )


def wait_ready(unit: Unit, *, timeout: float = 180.0) -> None:
    wait_until(
        lambda: http_ok(f"http://{unit.host}:{unit.http_port}/v2/models/{unit.model}/ready"),
        timeout=timeout,
        what=f"unit {unit.model} on {unit.grpc_port}",
        process=unit.process,
    )


@contextlib.contextmanager
def units(
    specs: list[tuple[str, str]],
    logs: Path,
    *,
    host: str = HOST,
    log_level: str = "WARNING",
    repository: Path = MODELS,
) -> Iterator[list[Unit]]:
    """Start units [(model, zone)] in parallel and wait until all are ready."""
    started: list[Unit] = []
    try:
        for model, zone in specs:
            started.append(
                start_unit(model, zone, logs, host=host, log_level=log_level, repository=repository)
            )
        for unit in started:
            wait_ready(unit)
        yield started
    finally:
        for unit in started:
            unit.process.stop(timeout=10)


@dataclass
class Gateway:
    port: int
    process: Process
    internal_port: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def internal_url(self) -> str:
        """Health, readiness, /metrics and the replica exchange."""
        return f"http://{HOST}:{self.internal_port}"


def start_gateway(
    directory: Path, logs: Path, *args: str, zone: str = "a", internal_port: int | None = None
) -> Gateway:
    port = free_port()
    internal = internal_port or free_port()
    process = Process(
        f"gateway-{port}",
        [
            sys.executable,
            "-m",
            "kiu",
            "gateway",
            "--directory",
            str(directory),
            "--host",
            HOST,
            "--port",
            str(port),
            "--internal-port",
            str(internal),
            "--zone",
            zone,
            *args,
        ],
        logs / f"gateway-{port}.log",
    ).start()
    gateway = Gateway(port, process, internal)
    wait_until(
        lambda: http_ok(f"{gateway.internal_url}/readyz"),
        timeout=60,
        what="the gateway",
        process=process,
    )
    return gateway


def metrics(gw: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A gateway's metrics: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"{gw.internal_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@contextlib.contextmanager
def gateway(
    directory: Path, logs: Path, *args: str, zone: str = "a", internal_port: int | None = None
) -> Iterator[Gateway]:
    started = start_gateway(directory, logs, *args, zone=zone, internal_port=internal_port)
    try:
        yield started
    finally:
        started.process.stop()


@dataclass
class ObjectStore:
    """A moto server (S3 and IAM) checking every signature, and the key it accepts."""

    endpoint: str  # http://host:port
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def environment(self) -> dict[str, str]:
        """The AWS_* variables a reader of the store is given."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def upload(self, directory: Path, bucket: str, prefix: str) -> None:
        """Every file under `directory` to `s3://bucket/prefix/<relative path>`."""
        s3 = self.s3()
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(directory)}")


@contextlib.contextmanager
def object_stores(
    logs: Path, *, host: str = HOST, users: tuple[str, ...] = ("reader",)
) -> Iterator[dict[str, ObjectStore]]:
    """Start moto on `host`; its first calls make IAM `users` allowed everything, and from
    then on it checks every signature, so only their keys read it. Each user's view."""
    import boto3

    port = free_port(host)
    server = Process(
        f"moto-{port}",
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        logs / f"moto-{port}.log",
        env={"INITIAL_NO_AUTH_ACTION_COUNT": str(3 * len(users))},  # 3 set-up calls each
    ).start()
    endpoint = f"http://{host}:{port}"
    try:
        wait_until(
            lambda: http_ok(f"{endpoint}/moto-api/"), timeout=60, what="moto", process=server
        )
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        everything = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        stores = {}
        for user in users:
            iam.create_user(UserName=user)
            iam.put_user_policy(
                UserName=user, PolicyName="all", PolicyDocument=json.dumps(everything)
            )
            key = iam.create_access_key(UserName=user)["AccessKey"]
            stores[user] = ObjectStore(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        yield stores
    finally:
        server.stop()


@contextlib.contextmanager
def object_store(logs: Path, *, host: str = HOST) -> Iterator[ObjectStore]:
    """:func:`object_stores` with one reader."""
    with object_stores(logs, host=host) as stores:
        yield stores["reader"]
