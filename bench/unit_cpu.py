"""Unit CPU per call: a 224-crop ImageNet-style classifier on a 640x480 JPEG.

A classifier generated like the tests' own models (NCHW float32 224x224, 1000
classes) is imported with `kiu model import --preset imagenet` (shorter side
256, centre crop 224, ImageNet mean/std, softmax). Measured in the same run:

* in process, CPU seconds per call of each stage on the same image: kiu's
  preprocessing (decode with JPEG draft mode, resize, crop, normalise), the
  same preprocessing with draft mode off (full-size decode: the baseline),
  both again for a 1280x960 JPEG, the ONNX model on onnxruntime, the
  postprocessing, and the whole imported repository as the unit runs it;
* a real `kiu unit` process serving the imported repository, called over gRPC
  one call at a time: its CPU seconds per call (from /proc), everything
  included (protocol, ensemble, batching).

Each figure is the median of 5 repetitions of 40 calls (20 in --quick), with
min and max. CPU time, not wall time, so other work on a shared machine
inflates it less, though caches and frequency still drift.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import tritonclient.grpc as grpcclient
from PIL import Image, JpegImagePlugin
from tests.gateway import processes
from tests.unit_runtime.own_models import OwnModel, build, photo

from bench import common
from kiu.imaging import postprocessing, preprocessing
from kiu.unit import importer, models
from kiu.unit.steps import read_contract

NAME = "unit_cpu"
MODEL = "imagenet224"
REPETITIONS = 5
IMAGENET = {"scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def _jpeg(width: int = 640, height: int = 480) -> bytes:
    image = Image.open(io.BytesIO(photo(width, height, seed=11)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _cpu_per_call(call: Callable[[], object], calls: int) -> list[float]:
    """Milliseconds of this process's CPU per call, one figure per repetition."""
    call()  # warm up
    figures = []
    for _ in range(REPETITIONS):
        started = time.process_time()
        for _ in range(calls):
            call()
        figures.append((time.process_time() - started) / calls * 1000)
    return figures


@contextmanager
def _spinning() -> Any:
    """onnxruntime's default session options: worker threads spin between runs."""
    original = models.session_options
    models.session_options = onnxruntime.SessionOptions  # type: ignore[assignment]
    try:
        yield
    finally:
        models.session_options = original  # type: ignore[assignment]


@contextmanager
def _no_draft() -> Any:
    """JPEG decoded at full size: Pillow's draft request turned into a no-op."""
    original = JpegImagePlugin.JpegImageFile.draft
    JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        JpegImagePlugin.JpegImageFile.draft = original  # type: ignore[method-assign]


async def _ensemble(repository: Path, image: bytes, calls: int) -> tuple[list[float], list[float]]:
    """The imported repository as the unit runs it (ensemble, batcher, threads), in this
    process and one event loop: no protocol. CPU and wall milliseconds per call, one
    figure each per repetition."""
    served = models.load_model(repository, MODEL)
    batch = {"IMAGE": np.array([[image]], dtype=np.object_)}
    await served.infer(batch)
    cpu, wall = [], []
    for _ in range(REPETITIONS):
        started, clock = time.process_time(), time.perf_counter()
        for _ in range(calls):
            await served.infer(batch)
        cpu.append((time.process_time() - started) / calls * 1000)
        wall.append((time.perf_counter() - clock) / calls * 1000)
    return cpu, wall


def _stats(figures: list[float]) -> dict[str, Any]:
    return {
        "median_ms": statistics.median(figures),
        "min_ms": min(figures),
        "max_ms": max(figures),
        "repetitions_ms": figures,
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    started = common.machine()
    calls = 20 if quick else 40
    image = _jpeg()
    with tempfile.TemporaryDirectory(prefix="kiu-bench-unit-") as tmp:
        work = Path(tmp)
        labels = [f"class{k}" for k in range(1000)]
        own = OwnModel(MODEL, "classification", labels, width=224, height=224, **IMAGENET)
        build(own, work / "model.onnx")
        (work / "labels.txt").write_text("\n".join(labels) + "\n")
        repository = work / "repository"
        code = importer.main(
            ["import", str(work / "model.onnx"), "--task", "classification", "--preset",
             "imagenet", "--labels", str(work / "labels.txt"), "--out",
             str(repository / MODEL)]
        )  # fmt: skip
        if code != 0:
            raise RuntimeError("kiu model import failed")
        contract = read_contract(repository / f"{MODEL}-preprocess" / "1")
        session = onnxruntime.InferenceSession(
            str(work / "model.onnx"),
            sess_options=models.session_options(),
            providers=["CPUExecutionProvider"],
        )
        tensor, _ = preprocessing.preprocess([image], contract)
        (scores,) = session.run(None, {contract.input.name: tensor})
        labelset = postprocessing.LabelSet(names=tuple(labels), thresholds=(50.0,) * 1000)
        stages = {
            "preprocessing": _cpu_per_call(
                lambda: preprocessing.preprocess([image], contract), calls
            ),
            "model": _cpu_per_call(lambda: session.run(None, {contract.input.name: tensor}), calls),
            "postprocessing": _cpu_per_call(
                lambda: postprocessing.classify(scores, labels=labelset, activation="softmax"),
                calls,
            ),
        }
        large = _jpeg(1280, 960)
        stages["preprocessing_1280"] = _cpu_per_call(
            lambda: preprocessing.preprocess([large], contract), calls
        )
        with _no_draft():
            stages["preprocessing_without_draft"] = _cpu_per_call(
                lambda: preprocessing.preprocess([image], contract), calls
            )
            stages["preprocessing_1280_without_draft"] = _cpu_per_call(
                lambda: preprocessing.preprocess([large], contract), calls
            )
        stages["ensemble_in_process"], stages["ensemble_in_process_wall"] = asyncio.run(
            _ensemble(repository, image, calls)
        )
        with _spinning():
            (
                stages["ensemble_in_process_spinning"],
                stages["ensemble_in_process_spinning_wall"],
            ) = asyncio.run(_ensemble(repository, image, calls))
        with processes.units([(MODEL, "a")], work, repository=repository) as (unit,):
            client = grpcclient.InferenceServerClient(f"{unit.host}:{unit.grpc_port}")
            request = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
            request.set_data_from_numpy(np.array([[image]], dtype=np.object_))
            client.infer(MODEL, [request])
            unit_figures = []
            for _ in range(REPETITIONS):
                before = common.cpu_seconds(unit.process.pid)
                for _ in range(calls):
                    client.infer(MODEL, [request])
                unit_figures.append((common.cpu_seconds(unit.process.pid) - before) / calls * 1000)
            client.close()
        stages["unit_process"] = unit_figures
    figures = {name: _stats(values) for name, values in stages.items()}
    return {
        "name": NAME,
        "machine": started,
        "settings": {
            "model": "generated NCHW float32 224x224 classifier, 1000 classes "
            "(conv 3x3/2 8 channels, global pool, dense); kiu model import --preset imagenet",
            "image": f"640x480 JPEG, quality 90, {len(image)} bytes",
            "calls_per_repetition": calls,
            "repetitions": REPETITIONS,
            "quick": quick,
        },
        "figures": figures,
        "targets": {},
    }


ROWS = (
    ("preprocessing", "preprocessing (kiu: JPEG draft decode, resize 256, crop 224, normalise)"),
    ("preprocessing_without_draft", "preprocessing with full-size JPEG decode (baseline)"),
    ("preprocessing_1280", "preprocessing of a 1280x960 JPEG (kiu: draft decode)"),
    ("preprocessing_1280_without_draft", "preprocessing of a 1280x960 JPEG, full-size decode"),
    ("model", "ONNX model on onnxruntime"),
    ("postprocessing", "postprocessing (softmax, rank 1000 classes)"),
    ("ensemble_in_process", "the imported repository in process (all steps)"),
    (
        "ensemble_in_process_spinning",
        "the same with onnxruntime's threads spinning between runs (its default; baseline)",
    ),
    ("unit_process", "`kiu unit` process, one gRPC call at a time (everything)"),
)


def summary(result: dict[str, Any]) -> str:
    st, fig = result["settings"], result["figures"]
    lines = [
        f"{st['image']}; model: {st['model']}. CPU milliseconds per call, median of "
        f"{st['repetitions']} repetitions of {st['calls_per_repetition']} calls (min - max). "
        "The network is small, so the model row is a floor: a real ResNet-50 costs far more; "
        "the preprocessing rows do not depend on the network.",
        "",
        "| stage | CPU ms/call median | min - max |",
        "|---|---|---|",
    ]
    for key, text in ROWS:
        v = fig[key]
        lines.append(
            f"| {text} | {common.fmt(v['median_ms'])} "
            f"| {common.fmt(v['min_ms'])} - {common.fmt(v['max_ms'])} |"
        )
    small = fig["preprocessing_without_draft"]["median_ms"] / fig["preprocessing"]["median_ms"]
    large = (
        fig["preprocessing_1280_without_draft"]["median_ms"]
        / fig["preprocessing_1280"]["median_ms"]
    )
    lines += [
        "",
        f"JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale only while the result stays at "
        f"least as large as the resize needs (341x256 here): a 640x480 photo cannot be "
        f"reduced (full-size / draft = {small:.2f}), a 1280x960 one is decoded at half size "
        f"(full-size / draft = {large:.2f}). The unit process spends more than the same "
        f"repository in process: the difference is the protocol (gRPC, kserve's request "
        f"and response handling, metrics) around the same steps.",
    ]
    spin = (
        fig["ensemble_in_process_spinning"]["median_ms"] / fig["ensemble_in_process"]["median_ms"]
    )
    asleep, spinning = fig["ensemble_in_process_wall"], fig["ensemble_in_process_spinning_wall"]
    lines += [
        "",
        f"The unit's onnxruntime sessions let their worker threads sleep between runs "
        f"(`session.intra_op.allow_spinning` 0); with onnxruntime's default, spinning, "
        f"the same repository costs {spin:.2f} times the CPU per call. Wall time per call "
        f"in process, one call at a time: {common.fmt(asleep['median_ms'])} ms "
        f"({common.fmt(asleep['min_ms'])} - {common.fmt(asleep['max_ms'])}) with the threads "
        f"sleeping, {common.fmt(spinning['median_ms'])} ms "
        f"({common.fmt(spinning['min_ms'])} - {common.fmt(spinning['max_ms'])}) spinning.",
    ]
    return "\n".join(lines)
