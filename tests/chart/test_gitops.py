"""GitOps support: the Argo CD health check (Lua, run with lupa) on statuses the operator's
own policy produces, and the GitOps manifests in examples/gitops/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kiu.policy import phase
from tests.cluster.fixtures import REPO
from tests.policy.statuses import assess, crash, projectversion

lupa = pytest.importorskip("lupa")

HEALTH = REPO / "examples" / "argocd-health.lua"
GITOPS = REPO / "examples" / "gitops"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the health check as Argo CD does: `obj` is a global, the script returns hs."""
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _lua(runtime, obj)
    result = runtime.execute(HEALTH.read_text())
    return str(result["status"]), str(result["message"])


def _lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_lua(runtime, v) for v in value])
    return value


def test_running_is_healthy() -> None:
    status, message = health(projectversion(assess()))
    assert status == "Healthy"
    assert message == "RUNNING: 2/2 units in service"


def test_idle_at_zero_is_healthy() -> None:
    idle = assess(min_units=0, desired=0, in_service=0, pods=0)
    assert health(projectversion(idle, desired=0, in_service=0))[0] == "Healthy"


def test_reduced_capacity_is_healthy_and_says_why() -> None:
    reduced = assess(in_service=1, failures=(crash(9_990.0),))
    status, message = health(projectversion(reduced, in_service=1))
    assert status == "Healthy"
    assert "reduced capacity: CrashLoopBackOff" in message


def test_starting_is_progressing() -> None:
    starting = assess(previous=None, in_service=0)
    status, message = health(projectversion(starting, in_service=0))
    assert status == "Progressing"
    assert message.startswith("STARTING: 0/2 units in service")


def test_failed_is_degraded() -> None:
    failed = assess(previous=phase.Status.STARTING, in_service=0, failures=(crash(0.0),))
    assert failed.status == phase.Status.FAILED
    status, message = health(projectversion(failed, in_service=0))
    assert status == "Degraded"
    assert message == failed.message


def test_stopping_then_stopped() -> None:
    stopping = assess(running=False, pods=2)
    stopped = assess(running=False, pods=0)
    assert health(projectversion(stopping, state="Stopped"))[0] == "Progressing"
    assert health(projectversion(stopped, state="Stopped", desired=0, in_service=0))[0] == (
        "Suspended"
    )


def test_no_status_or_an_unobserved_spec_is_progressing() -> None:
    assert health(projectversion(None)) == (
        "Progressing",
        "Waiting for the kiu operator to report a status",
    )
    status, message = health(projectversion(assess(), generation=4, observed=3))
    assert status == "Progressing"
    assert "generation 4" in message


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_argocd_configmap_embeds_the_health_check() -> None:
    (config,) = _documents(GITOPS / "argocd-cm.yaml")
    assert config["kind"] == "ConfigMap"
    assert config["metadata"]["name"] == "argocd-cm"
    embedded = config["data"]["resource.customizations.health.kiu.dev_ProjectVersion"]
    assert embedded == HEALTH.read_text()


def test_argocd_application_and_flux_kustomization_point_at_examples() -> None:
    chart, models = _documents(GITOPS / "argocd-application.yaml")
    assert chart["spec"]["source"]["path"] == "charts/kiu"
    assert models["spec"]["source"]["path"] == "examples"
    # The chart (and its CRD) syncs before the ProjectVersions.
    assert int(chart["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < int(
        models["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", 0)
    )
    flux = _documents(GITOPS / "flux-kustomization.yaml")
    kustomization = next(d for d in flux if d["kind"] == "Kustomization")
    assert kustomization["spec"]["path"] == "./examples"
    assert kustomization["spec"]["wait"] is True
    (check,) = kustomization["spec"]["healthCheckExprs"]
    assert (check["apiVersion"], check["kind"]) == ("kiu.dev/v1alpha1", "ProjectVersion")
    assert {"current", "failed", "inProgress"} <= set(check)


def test_the_flux_expressions_agree_with_the_lua_check() -> None:
    """Evaluated with cel-python on the same statuses, Flux decides as Argo CD does."""
    celpy = pytest.importorskip("celpy")
    flux = _documents(GITOPS / "flux-kustomization.yaml")
    (check,) = next(d for d in flux if d["kind"] == "Kustomization")["spec"]["healthCheckExprs"]
    environment = celpy.Environment()
    programs = {
        key: environment.program(environment.compile(check[key]))
        for key in ("current", "failed", "inProgress")
    }

    def flux_health(obj: dict[str, Any]) -> str:
        activation = {k: celpy.json_to_cel(v) for k, v in obj.items()}
        matched = [key for key, program in programs.items() if program.evaluate(activation)]
        assert len(matched) == 1, matched  # whatever order Flux evaluates them in
        return matched[0]

    expected = {"Healthy": "current", "Degraded": "failed", "Progressing": "inProgress"}
    cases = [
        projectversion(assess()),
        projectversion(assess(previous=None, in_service=0), in_service=0),
        projectversion(
            assess(previous=phase.Status.STARTING, in_service=0, failures=(crash(0.0),)),
            in_service=0,
        ),
        projectversion(assess(in_service=1, failures=(crash(9_990.0),)), in_service=1),
        projectversion(assess(), generation=4, observed=3),
    ]
    for obj in cases:
        assert flux_health(obj) == expected[health(obj)[0]], obj["status"]["status"]
    stopped = projectversion(
        assess(running=False, pods=0), state="Stopped", desired=0, in_service=0
    )
    assert health(stopped)[0] == "Suspended"
    assert flux_health(stopped) == "current"  # stopped is what was asked for
