"""triton-models/: every config parses with Triton's own protobuf definitions and agrees with
the ONNX graphs, the label files and the wire contract the gateway relies on."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from kiu.imaging import scenes
from kiu.unit.repository import config_json
from kiu.unit.steps import LABELS_FILE, THRESHOLDS_FILE, load_step

REPOSITORY = Path(__file__).resolve().parents[2] / "triton-models"
ENSEMBLES = {"shapes-classifier": "classification", "shapes-detector": "object_detection"}
MAX_FILE_BYTES = 5 * 1024 * 1024

ONNX_TYPES = {"tensor(float)": mc.TYPE_FP32}


def _configs() -> dict[str, mc.ModelConfig]:
    configs = {}
    for path in sorted(REPOSITORY.glob("*/config.pbtxt")):
        config = text_format.Parse(path.read_text(), mc.ModelConfig())
        assert config.name == path.parent.name, f"{path}: name must match the directory"
        configs[config.name] = config
    return configs


CONFIGS = _configs()


def _tensors(tensors: object) -> dict[str, tuple[int, list[int]]]:
    return {t.name: (t.data_type, list(t.dims)) for t in tensors}  # type: ignore[attr-defined]


def test_repository_has_both_tasks_and_their_steps() -> None:
    assert set(ENSEMBLES) <= set(CONFIGS)
    for name in ENSEMBLES:
        for step in ("preprocess", "onnx", "postprocess"):
            assert f"{name}-{step}" in CONFIGS


@pytest.mark.parametrize(("name", "task"), ENSEMBLES.items())
def test_ensemble_wire_contract(name: str, task: str) -> None:
    config = CONFIGS[name]
    assert config.platform == "ensemble"
    assert config.max_batch_size == 8
    assert config.parameters["kiu.task"].string_value == task
    assert _tensors(config.input) == {"IMAGE": (mc.TYPE_STRING, [1])}
    outputs = {
        "LABELS": (mc.TYPE_STRING, [-1]),
        "CONFIDENCES": (mc.TYPE_FP32, [-1]),
        "THRESHOLDS": (mc.TYPE_FP32, [-1]),
    }
    if task == "object_detection":
        outputs["BOXES"] = (mc.TYPE_FP32, [-1, 4])
    assert _tensors(config.output) == outputs
    assert (REPOSITORY / name / "1").is_dir(), "Triton needs a version directory, even empty"


@pytest.mark.parametrize("name", ENSEMBLES)
def test_ensemble_steps_are_wired_with_matching_types_and_shapes(name: str) -> None:
    config = CONFIGS[name]
    produced = {t.name: (t.data_type, list(t.dims)) for t in config.input}
    for step in config.ensemble_scheduling.step:
        model = CONFIGS[step.model_name]
        assert model.max_batch_size == config.max_batch_size
        inputs, outputs = _tensors(model.input), _tensors(model.output)
        assert set(step.input_map) == set(inputs), step.model_name
        for key, tensor in step.input_map.items():
            assert produced[tensor] == inputs[key], f"{step.model_name}.{key} <- {tensor}"
        assert set(step.output_map) <= set(outputs)
        for key, tensor in step.output_map.items():
            produced[tensor] = outputs[key]
    assert {t.name: produced[t.name] for t in config.output} == _tensors(config.output)


@pytest.mark.parametrize("name", [f"{model}-onnx" for model in ENSEMBLES])
def test_onnx_configs_match_the_graphs(name: str) -> None:
    config = CONFIGS[name]
    assert config.backend == "onnxruntime"
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    path = REPOSITORY / name / "1" / "model.onnx"
    assert path.stat().st_size < MAX_FILE_BYTES
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for declared, actual in (
        (config.input, session.get_inputs()),
        (config.output, session.get_outputs()),
    ):
        graph = {
            t.name: (ONNX_TYPES[t.type], [d if isinstance(d, int) else -1 for d in t.shape])
            for t in actual
        }
        # the graph's first dimension is the batch, which a config with max_batch_size omits
        assert graph == {n: (dtype, [-1, *dims]) for n, (dtype, dims) in _tensors(declared).items()}


@pytest.mark.parametrize(
    "name", [f"{model}-{step}" for model in ENSEMBLES for step in ("preprocess", "postprocess")]
)
def test_python_steps_load_from_their_config_and_files(name: str) -> None:
    config = CONFIGS[name]
    assert config.backend == "python"
    version = REPOSITORY / name / "1"
    assert "kiu.unit.pythonbackend import TritonPythonModel" in (version / "model.py").read_text()
    step = load_step(config_json(config), version)
    if name.endswith("postprocess"):
        assert (version / LABELS_FILE).read_text().split() == list(scenes.SHAPES)
        labels = step.labels  # type: ignore[attr-defined]
        assert labels.names == scenes.SHAPES
        assert all(1.0 <= t <= 99.0 for t in labels.thresholds)
        assert (version / THRESHOLDS_FILE).is_file()
