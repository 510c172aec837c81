"""Real `kiu unit` processes on loopback, called with tritonclient over gRPC and HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests.ports import free_port

from .expected import MODELS, REPOSITORY, check, images, summary

STARTUP_SECONDS = 90


@dataclass
class Unit:
    model: str
    process: subprocess.Popen[bytes]
    log: Path
    http: str
    grpc: str
    metrics: str

    def grpc_client(self) -> grpcclient.InferenceServerClient:
        return grpcclient.InferenceServerClient(self.grpc)

    def http_client(self) -> httpclient.InferenceServerClient:
        return httpclient.InferenceServerClient(self.http)

    def stop(self) -> int:
        """SIGTERM, then the exit code (a unit that does not stop fails the test)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"unit did not stop on SIGTERM:\n{self.log.read_text()}") from None


def _free_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]


def start_unit(
    model: str,
    log: Path,
    *,
    grace_period: float = 10,
    repository: str = str(REPOSITORY),
    env: dict[str, str] | None = None,
) -> Unit:
    """A unit serving `model` of `repository` (a directory or s3://), ready; `env` adds to
    the environment."""
    http, grpc, metrics = _free_ports(3)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "kiu", "unit",
                "--model-repository", repository,
                "--model", model,
                "--host", "127.0.0.1",
                "--http-port", str(http),
                "--grpc-port", str(grpc),
                "--metrics-port", str(metrics),
                "--grace-period", str(grace_period),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    unit = Unit(
        model, process, log, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", f"127.0.0.1:{metrics}"
    )
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"unit exited with {process.returncode}:\n{log.read_text()}")
        try:
            if unit.http_client().is_server_ready():
                return unit
        except Exception:  # not listening yet
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"unit not ready after {STARTUP_SECONDS}s:\n{log.read_text()}")


@pytest.fixture(scope="module", params=list(MODELS))
def unit(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Unit]:
    running = start_unit(request.param, tmp_path_factory.mktemp("unit") / "unit.log")
    yield running
    assert running.stop() == 0, running.log.read_text()


def _grpc_input(data: list[bytes], shape: list[int] | None = None) -> grpcclient.InferInput:
    array = np.array([[d] for d in data], dtype=np.object_)
    tensor = grpcclient.InferInput("IMAGE", shape or list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def _http_input(data: list[bytes]) -> httpclient.InferInput:
    array = np.array([[d] for d in data], dtype=np.object_)
    tensor = httpclient.InferInput("IMAGE", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def _outputs(
    result: grpcclient.InferResult | httpclient.InferResult, model: str
) -> dict[str, np.ndarray]:
    names = ["LABELS", "CONFIDENCES", "THRESHOLDS"] + (["BOXES"] if "detector" in model else [])
    return {name: result.as_numpy(name) for name in names}


def test_health_metadata_and_config_match_the_ensemble_contract(unit: Unit) -> None:
    task = "classification" if unit.model == "shapes-classifier" else "object_detection"
    outputs = [
        {"name": "LABELS", "datatype": "BYTES", "shape": [-1, -1]},
        {"name": "CONFIDENCES", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "THRESHOLDS", "datatype": "FP32", "shape": [-1, -1]},
    ]
    if task == "object_detection":
        outputs.append({"name": "BOXES", "datatype": "FP32", "shape": [-1, -1, 4]})
    inputs = [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]}]

    grpc = unit.grpc_client()
    assert grpc.is_server_live()
    assert grpc.is_server_ready()
    assert grpc.is_model_ready(unit.model)
    metadata = grpc.get_model_metadata(unit.model)
    assert metadata.platform == "ensemble"
    as_lists = [
        {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.inputs
    ]
    assert as_lists == inputs
    assert [
        {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.outputs
    ] == outputs
    config = grpc.get_model_config(unit.model).config
    assert config.parameters["kiu.task"].string_value == task
    assert config.max_batch_size == 8

    http = unit.http_client()
    assert http.is_server_live()
    assert http.is_server_ready()
    assert http.is_model_ready(unit.model)
    metadata_json = http.get_model_metadata(unit.model)
    assert metadata_json["inputs"] == inputs
    assert metadata_json["outputs"] == outputs
    assert http.get_model_config(unit.model)["parameters"]["kiu.task"]["string_value"] == task
    with urllib.request.urlopen(f"http://{unit.http}/v2/health/ready") as response:
        assert response.status == 200


def test_grpc_results_match_the_committed_expectations(unit: Unit) -> None:
    client = unit.grpc_client()
    results = []
    for image in images(unit.model):
        result = client.infer(unit.model, [_grpc_input([image])])
        results.append(summary(_outputs(result, unit.model), 0))
    check(unit.model, results)


def test_http_binary_results_match_the_committed_expectations(unit: Unit) -> None:
    client = unit.http_client()
    results = []
    for image in images(unit.model):
        result = client.infer(unit.model, [_http_input([image])])
        results.append(summary(_outputs(result, unit.model), 0))
    check(unit.model, results)


def test_http_json_outputs_carry_the_same_results(unit: Unit) -> None:
    client = unit.http_client()
    requested = [
        httpclient.InferRequestedOutput("LABELS", binary_data=False),
        httpclient.InferRequestedOutput("CONFIDENCES", binary_data=False),
    ]
    image = images(unit.model)[0]
    result = client.infer(unit.model, [_http_input([image])], outputs=requested)
    body = result.get_response()
    assert [o["name"] for o in body["outputs"]] == ["LABELS", "CONFIDENCES"]
    full = client.infer(unit.model, [_http_input([image])])
    assert [label.encode() for label in body["outputs"][0]["data"]] == list(
        full.as_numpy("LABELS")[0]
    )
    assert np.allclose(body["outputs"][1]["data"], full.as_numpy("CONFIDENCES")[0])


def test_a_batch_gives_each_item_its_own_results(unit: Unit) -> None:
    fixed = images(unit.model)
    result = unit.grpc_client().infer(unit.model, [_grpc_input(fixed)])
    outputs = _outputs(result, unit.model)
    assert outputs["LABELS"].shape[0] == len(fixed)
    check(unit.model, [summary(outputs, i) for i in range(len(fixed))])


def test_bad_requests_are_protocol_errors_and_the_unit_keeps_serving(unit: Unit) -> None:
    grpc = unit.grpc_client()
    fixed = images(unit.model)
    cases = [
        ([_grpc_input([b"not an image"])], "item 0: not a PNG or JPEG image"),
        ([_grpc_input([fixed[0], b""])], "item 1: empty image"),
        ([_grpc_input([fixed[0]] * 9)], "batch size 9 is outside 1..8"),
    ]
    wrong_shape = grpcclient.InferInput("IMAGE", [1, 2], "BYTES")
    wrong_shape.set_data_from_numpy(np.array([[fixed[0], fixed[1]]], dtype=np.object_))
    cases.append(([wrong_shape], r"must have shape \[-1, 1\], got \[1, 2\]"))
    wrong_type = grpcclient.InferInput("IMAGE", [1, 1], "FP32")
    wrong_type.set_data_from_numpy(np.zeros((1, 1), np.float32))
    cases.append(([wrong_type], "must be BYTES, got FP32"))
    for inputs, message in cases:
        with pytest.raises(InferenceServerException, match=message) as caught:
            grpc.infer(unit.model, inputs)
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="has no outputs") as caught:
        grpc.infer(
            unit.model, [_grpc_input(fixed[:1])], outputs=[grpcclient.InferRequestedOutput("NOPE")]
        )
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"

    http = unit.http_client()
    with pytest.raises(InferenceServerException, match="not a PNG or JPEG image") as caught:
        http.infer(unit.model, [_http_input([b"\x89PNG but not really"])])
    assert caught.value.status() == "400"
    with pytest.raises(InferenceServerException) as caught:
        http.get_model_config("no-such-model")
    assert caught.value.status() == "404"

    assert grpc.is_server_ready()
    assert grpc.infer(unit.model, [_grpc_input(fixed[:1])]).as_numpy("LABELS").shape[0] == 1


def test_metrics_count_requests_by_outcome(unit: Unit) -> None:
    unit.grpc_client().infer(unit.model, [_grpc_input(images(unit.model)[:2])])
    with urllib.request.urlopen(f"http://{unit.metrics}/metrics") as response:
        text = response.read().decode()
    assert f'kiu_unit_requests_total{{model="{unit.model}",outcome="success"}}' in text
    assert f'kiu_unit_inference_items_total{{model="{unit.model}"}}' in text
    assert "kiu_unit_request_duration_seconds_bucket" in text


def _slow_batch() -> list[bytes]:
    """Eight 4000x4000 PNGs that compress to a few KB but take about a second to decode:
    a request still running when SIGTERM arrives."""
    ramp = np.tile(np.linspace(0, 255, 4000, dtype=np.uint8), (4000, 1))
    buffer = io.BytesIO()
    Image.fromarray(np.stack([ramp] * 3, axis=2)).save(buffer, "PNG")
    return [buffer.getvalue()] * 8


def test_sigterm_finishes_requests_in_flight_then_exits_0(tmp_path: Path) -> None:
    # The grace period is far longer than the batch takes, however busy the machine:
    # the test checks that in-flight work is finished, not how fast.
    running = start_unit("shapes-classifier", tmp_path / "unit.log", grace_period=300)
    batch = _slow_batch()

    async def scenario() -> np.ndarray:
        client = grpcclient_aio.InferenceServerClient(running.grpc)
        tensor = grpcclient_aio.InferInput("IMAGE", [8, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[d] for d in batch], dtype=np.object_))
        in_flight = asyncio.create_task(client.infer("shapes-classifier", [tensor]))
        await asyncio.sleep(0.3)
        assert not in_flight.done(), "the request finished before SIGTERM; make it slower"
        running.process.send_signal(signal.SIGTERM)
        result = await in_flight
        await client.close()
        return result.as_numpy("LABELS")

    labels = asyncio.run(scenario())
    assert labels.shape[0] == 8
    assert running.process.wait(timeout=300) == 0, running.log.read_text()
    assert "stopping: finishing requests in flight" in running.log.read_text()


def test_calibrate_reports_a_sustained_rate(unit: Unit, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable, "-m", "kiu", "calibrate",
            "--url", unit.grpc,
            "--model", unit.model,
            "--step-seconds", "1",
            "--start-rate", "2",
            "--max-rate", "4",
            "--refinements", "0",
            "--json", str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    assert report["model"] == unit.model
    assert report["sustained_tps"] >= 2
    assert report["capped_by_max_rate"] is True
    assert [step["rate"] for step in report["steps"]] == [2.0, 3.0]
    assert all(step["passed"] and step["failed"] == 0 for step in report["steps"])
    assert "sustains" in completed.stdout
    assert "p99 ms" in completed.stdout


def test_calibrate_sends_your_own_images(unit: Unit, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    for index, image in enumerate(images(unit.model)):
        suffix = ".png" if image.startswith(b"\x89PNG") else ".JPG"
        (mine / f"{index}{suffix}").write_bytes(image)
    (mine / "notes.txt").write_text("not an image")
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable, "-m", "kiu", "calibrate",
            "--url", unit.grpc, "--model", unit.model, "--images", str(mine),
            "--step-seconds", "1", "--start-rate", "3", "--max-rate", "3",
            "--json", str(report_path),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    assert report["images"] == len(images(unit.model))
    (step,) = report["steps"]
    assert step["sent"] == step["succeeded"] == 3


def test_calibrate_refuses_a_directory_without_images(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "kiu", "calibrate", "--model", "m", "--images", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert f"no .jpg, .jpeg or .png files in {tmp_path}" in completed.stderr
