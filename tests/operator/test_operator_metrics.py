"""The operator's per-model metrics, read from the reconciler's memory at scrape time."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kiu.api import projectversion
from kiu.controller import metrics
from kiu.controller.reconciler import Memory
from kiu.policy import scaling
from tests.operator import harness


def _version(name: str, status: dict[str, Any], **spec: Any) -> projectversion.ProjectVersion:
    body = harness.projectversion(name, **spec)
    body["metadata"].update(
        namespace="retail", uid=name, generation=1, creationTimestamp="2025-01-01T00:00:00Z"
    )
    body["spec"]["inferenceUnit"]["tps"] = 4
    return projectversion.parse({**body, "status": status})


def _condition(kind: str, status: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": "Because",
        "message": "",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "observedGeneration": 1,
    }


def _scrape(memory: dict[tuple[str, str], Memory]) -> dict[tuple[str, tuple[str, ...]], float]:
    registry = metrics.Metrics(memory=lambda: memory, clock=lambda: 0.0).registry
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _labels(name: str, **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"namespace": "retail", "projectversion": name, **more}.items()))


def test_status_degraded_and_capacity_of_each_version() -> None:
    decision = scaling.Recommendation(
        desired=2,
        cause=scaling.Cause.STEADY,
        reason="",
        needed=2,
        history=scaling.History(),
    )
    running = _version(
        "running",
        {"status": "RUNNING", "conditions": [_condition("Degraded", "False")]},
        minInferenceUnits=1,
        maxInferenceUnits=5,
    )
    broken = _version(
        "broken",
        {"status": "FAILED", "conditions": [_condition("Degraded", "True")]},
        minInferenceUnits=3,
    )
    values = _scrape(
        {
            ("retail", "running"): Memory(pv=running, decision=decision),
            ("retail", "broken"): Memory(pv=broken),  # invalid: never decided
        }
    )
    assert values["kiu_projectversion_status", _labels("running", status="RUNNING")] == 1
    assert values["kiu_projectversion_status", _labels("broken", status="FAILED")] == 1
    assert ("kiu_projectversion_status", _labels("broken", status="RUNNING")) not in values
    assert values["kiu_projectversion_degraded", _labels("running")] == 0
    assert values["kiu_projectversion_degraded", _labels("broken")] == 1
    # 4 TPS per unit at the largest size: max units, else (no autoscaling) min units.
    assert values["kiu_max_capacity_tps", _labels("running")] == 20
    assert ("kiu_max_capacity_tps", _labels("broken")) not in values
