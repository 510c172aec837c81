"""The real Triton server (2.51, from the `nvidia-pytriton` wheel) accepts kiu's repositories:
the bundled models and repositories written by `kiu model import` load, the ensembles are
ready and serve `kiu.task` as the gateway reads it, and a broken contract fails the load
with the loader's message.

The wheel's server has only the Python backend, so the ONNX steps run on a small
Python-based `onnxruntime` backend (`triton_backends/onnxruntime`). Without a CUDA driver
tensors do not pass between this server and its Python stubs, so inference is checked on
the cpu runtime (test_own_models) and here only loading, configs and health.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from kiu.unit import importer
from tests.ports import free_port

from .expected import REPOSITORY
from .own_models import MODELS, build, import_flags

# The wheel is installed without its dependencies (see the Makefile), so its package is
# located, not imported.
_SPEC = importlib.util.find_spec("pytriton")
assert _SPEC is not None, "nvidia-pytriton is not installed: run make venv"
assert _SPEC.origin is not None
SERVER = Path(_SPEC.origin).parent / "tritonserver"
LIBS = Path(_SPEC.origin).parents[1] / "nvidia_pytriton.libs"
HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def _backends(directory: Path) -> Path:
    """Triton's Python backend with the stub for this interpreter, and the onnxruntime one."""
    python = directory / "python"
    python.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy(SERVER / "backends" / "python" / name, python / name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy(
        SERVER / "python_backend_stubs" / version / "triton_python_backend_stub",
        python / "triton_python_backend_stub",
    )
    shutil.copytree(HERE / "triton_backends" / "onnxruntime", directory / "onnxruntime")
    return directory


class Triton:
    def __init__(self, repository: Path, backends: Path, log: Path) -> None:
        self.grpc = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "LD_LIBRARY_PATH": str(LIBS),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            # the stubs import kiu (the Python steps) and onnxruntime
            "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), *sys.path[1:]]),
        }
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(SERVER / "bin" / "tritonserver"),
                    f"--model-repository={repository}",
                    f"--backend-directory={backends}",
                    "--model-control-mode=explicit",
                    "--http-address=127.0.0.1", f"--http-port={free_port()}",
                    "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc.split(':')[1]}",
                    "--allow-metrics=false",
                ],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        self.client = grpcclient.InferenceServerClient(self.grpc)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                if self.client.is_server_ready():
                    return
            except InferenceServerException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"tritonserver not ready:\n{log.read_text()}")

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triton]:
    work = tmp_path_factory.mktemp("triton")
    repository = work / "repository"
    shutil.copytree(REPOSITORY, repository)
    for model in MODELS:
        path = work / f"{model.name}.onnx"
        build(model, path)
        flags = import_flags(model, path, work / f"{model.name}.txt", repository / model.name)
        assert importer.main(["import", *flags]) == 0
    # a user's repository whose contract names an unknown colour order
    broken = repository / "broken-preprocess"
    for step in ("", "-preprocess", "-onnx", "-postprocess"):
        shutil.copytree(repository / f"cls-imagenet{step}", repository / f"broken{step}")
        config = repository / f"broken{step}" / "config.pbtxt"
        config.write_text(config.read_text().replace("cls-imagenet", "broken"))
    contract = broken / "1" / "contract.json"
    contract.write_text(contract.read_text().replace('"RGB"', '"CMYK"'))
    server = Triton(repository, _backends(work / "backends"), work / "triton.log")
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("shapes-classifier", "classification"),
        ("shapes-detector", "object_detection"),
        *[
            (m.name, "classification" if m.task == "classification" else "object_detection")
            for m in MODELS
        ],
    ],
)
def test_triton_loads_the_repository_and_serves_the_task(
    triton: Triton, model: str, task: str
) -> None:
    triton.client.load_model(model)
    assert triton.client.is_model_ready(model)
    for step in ("preprocess", "onnx", "postprocess"):
        assert triton.client.is_model_ready(f"{model}-{step}")
    config = triton.client.get_model_config(model).config
    assert config.parameters["kiu.task"].string_value == task
    assert config.platform == "ensemble"
    assert [o.name for o in config.output][:3] == ["LABELS", "CONFIDENCES", "THRESHOLDS"]


def test_triton_refuses_a_broken_contract_with_the_loaders_message(triton: Triton) -> None:
    with pytest.raises(InferenceServerException) as caught:
        triton.client.load_model("broken")
    assert not triton.client.is_model_ready("broken")
    log = triton.log.read_text()
    assert "colour must be one of RGB, BGR, not 'CMYK'" in str(caught.value) + log
