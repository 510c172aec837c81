"""The ways kiu is delivered besides the chart: the image, kind, `make demo`."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.chart import chart
from tests.cluster.fixtures import REPO

DOCKERFILE = REPO / "docker" / "kiu" / "Dockerfile"
needs_helm = pytest.mark.skipif(not chart.HELM.exists(), reason="helm is built by `make tools`")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    return _load("kiu_demo", REPO / "hack" / "demo.py")


# --- the image ----------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_image_is_multi_stage_on_a_pinned_base() -> None:
    steps = _instructions()
    (base,) = [rest for keyword, rest in steps if keyword == "ARG" and "PYTHON_IMAGE=" in rest]
    image = base.split("=", 1)[1]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image)
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(froms) >= 2
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    assert not any("latest" in f for f in froms)


@needs_helm
def test_image_runs_kiu_as_the_unit_user_with_the_models() -> None:
    from kiu.manifests import units

    steps = _instructions()
    (entrypoint,) = [rest for keyword, rest in steps if keyword == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["kiu"]
    user = [rest for keyword, rest in steps if keyword == "USER"][-1]
    uid = next(rest for k, rest in steps if k == "ARG" and rest.startswith("KIU_UID=")).split("=")[
        1
    ]
    assert user == "${KIU_UID}:${KIU_UID}"
    assert int(uid) == units.UNIT_USER != 0
    copies = [rest for keyword, rest in steps if keyword == "COPY"]
    assert any(c.endswith(f"triton-models {units.BUNDLED_REPOSITORY}") for c in copies)
    # The chart's containers run the entrypoint, and its pods run as that user.
    objects = chart.template()
    for _, spec in chart.pod_specs(objects):
        assert spec["containers"][0]["command"] == ["kiu"]
        assert spec["securityContext"]["runAsUser"] == int(uid)


def test_build_context_keeps_what_the_dockerfiles_copy() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for dockerfile in (DOCKERFILE, REPO / "docker" / "triton" / "Dockerfile"):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY") and "--from" not in line:
                sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
                for source in sources:
                    assert source.rstrip("/") not in ignored, (dockerfile.name, source)
                    assert (REPO / source).exists(), source
    assert {".venv", ".kiu", ".git", "hack/.cache"} <= ignored


# --- kind ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["kind-up.sh", "kind-down.sh"])
def test_kind_scripts_parse(script: str) -> None:
    path = REPO / "hack" / script
    assert path.stat().st_mode & 0o111, "executable"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_kind_cluster_has_three_workers_in_three_zones() -> None:
    config = yaml.safe_load((REPO / "hack" / "kind" / "cluster.yaml").read_text())
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    zones = [w["labels"]["topology.kubernetes.io/zone"] for w in workers]
    assert sorted(zones) == ["zone-a", "zone-b", "zone-c"]


def test_kind_triton_variant_is_admitted() -> None:
    admission = _load("kiu_admission", REPO / "tests" / "api" / "admission.py")
    obj = yaml.safe_load((REPO / "hack" / "kind" / "shapes-classifier-triton.yaml").read_text())
    _, errors = admission.admit(obj)
    assert errors == []
    assert obj["spec"]["inferenceUnit"]["runtime"] == "triton"
    up = (REPO / "hack" / "kind-up.sh").read_text()
    assert "nvcr.io/nvidia/tritonserver" in up
    assert "operator.tritonImage" in up


# --- make demo ----------------------------------------------------------------------


def test_make_demo_targets() -> None:
    makefile = (REPO / "Makefile").read_text()
    demo = re.search(r"^demo: (.*?) ##.*\n((?:\t.*\n)+)", makefile, re.M)
    assert demo is not None
    assert demo.group(1).split() == ["venv", "tools"]
    assert demo.group(2).splitlines() == ["\thack/cluster.sh up", "\t$(BIN)/python hack/demo.py"]
    down = re.search(r"^demo-down:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert down is not None
    assert "helm uninstall kiu" in down.group(1)
    assert down.group(1).rstrip().endswith("hack/cluster.sh down")


def test_load_rises_above_one_unit_and_falls(demo: ModuleType) -> None:
    one_unit = 5.0  # examples/shapes-classifier.yaml: tps 5
    rates = [demo.rate_at(t)[1] for t in range(int(demo.duration()))]
    assert rates[0] < one_unit
    assert max(rates) > 2 * one_unit
    assert rates[-1] < one_unit
    peak = rates.index(max(rates))
    assert all(r < one_unit for r in rates[-60:]), "calm long enough for the scale-down delay"
    assert peak < len(rates) - 60 - demo.SCALE_DOWN_DELAY
    assert demo.rate_at(demo.duration() + 1) == ("done", 0.0)


def test_schedule_follows_the_rate(demo: ModuleType) -> None:
    times = list(demo.schedule())
    assert times == sorted(times)
    expected = sum(p.seconds * (p.start_tps + p.end_tps) / 2 for p in demo.PROFILE)
    assert abs(len(times) - expected) <= 1
    start = sum(p.seconds for p in demo.PROFILE[:2])
    (peak,) = [p for p in demo.PROFILE if p.name == "peak"]
    during = [t for t in times if start <= t < start + peak.seconds]
    assert len(during) == pytest.approx(peak.start_tps * peak.seconds, abs=2)


def test_example_is_what_the_demo_drives(demo: ModuleType) -> None:
    example = yaml.safe_load((REPO / "examples" / f"{demo.MODEL}.yaml").read_text())
    assert example["spec"]["minInferenceUnits"] == 1
    assert example["spec"]["maxInferenceUnits"] == 4
    assert example["spec"]["inferenceUnit"] == {"runtime": "cpu", "tps": 5}


def _samples(demo: ModuleType) -> list[Any]:
    out = []
    for t in range(0, int(demo.duration()), 3):
        phase, offered = demo.rate_at(t)
        desired = 1 if offered < 5 else 4
        limit = 5.0 * desired
        out.append(
            demo.Sample(
                t=float(t),
                phase=phase,
                offered=offered,
                admitted=min(offered, limit),
                throttled=max(0.0, offered - limit),
                errors=0.0,
                p50_ms=40.0,
                p95_ms=90.0 if t else None,
                desired=desired,
                in_service=desired if t % 2 else None,
                tps_limit=limit,
                demand=offered,
                status="RUNNING",
            )
        )
    return out


def test_table_rows_line_up(demo: ModuleType) -> None:
    header = demo.header()
    for sample in _samples(demo)[:5]:
        row = demo.row(sample)
        assert len(row) == len(header)
    assert "throttled/s" in header
    assert "TPS limit" in header


def test_plot_and_csv_of_a_run(demo: ModuleType, tmp_path: Path) -> None:
    samples = _samples(demo)
    png = demo.plot(samples, tmp_path / "run.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    table = demo.write_csv(samples, tmp_path / "run.csv")
    lines = table.read_text().splitlines()
    assert lines[0].startswith("t,phase,offered,admitted,throttled")
    assert len(lines) == len(samples) + 1


def test_percentile(demo: ModuleType) -> None:
    assert demo.percentile([], 0.5) is None
    assert demo.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert demo.percentile([float(i) for i in range(1, 101)], 0.95) == 95.0


@needs_helm
def test_printed_instructions_name_real_objects(demo: ModuleType) -> None:
    text = demo.instructions(Path("/tmp/x.png"), Path("/tmp/x.csv"))
    objects = chart.template(set_values=["accessKeys.create=true", *_demo_keys(demo)])
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Secret", demo.SECRET) in names
    assert ("Service", demo.GATEWAY_SERVICE) in names
    # Users reach the gateway through its Service, as a client of a real cluster would.
    assert f"kubectl get service {demo.GATEWAY_SERVICE} -n {demo.SYSTEM}" in text
    assert "{.spec.clusterIP}" in text
    assert "make demo-down" in text
    assert "kubectl get pjv -n demo" in text
    # The snippet is valid Python once the shell has substituted nothing in it.
    snippet = text.split("<<'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    compile(snippet, "snippet", "exec")


def _demo_keys(demo: ModuleType) -> list[str]:
    return [
        f"accessKeys.keys[0].name={demo.KEY_NAME}",
        f"accessKeys.keys[0].accessKeyId={demo.KEY_ID}",
        "accessKeys.keys[0].namespaces={demo}",
    ]
