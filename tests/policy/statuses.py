"""ProjectVersion objects whose status kiu's own policy (kiu.policy.phase) produced, for the
tests of what GitOps tools and kstatus read from them."""

from __future__ import annotations

from typing import Any

from kiu.policy import phase


def projectversion(
    assessment: phase.Assessment | None,
    *,
    generation: int = 3,
    observed: int = 3,
    state: str = "Running",
    desired: int = 2,
    in_service: int = 2,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "kiu.dev/v1alpha1",
        "kind": "ProjectVersion",
        "metadata": {"name": "shoes-v3", "namespace": "retail", "generation": generation},
        "spec": {"state": state, "minInferenceUnits": 2},
    }
    if assessment is not None:
        obj["status"] = {
            "status": str(assessment.status),
            "statusMessage": assessment.message,
            "observedGeneration": observed,
            "desiredInferenceUnits": desired,
            "inServiceInferenceUnits": in_service,
            "conditions": [
                {
                    "type": c.type,
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "observedGeneration": observed,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
                for c in assessment.conditions
            ],
        }
    return obj


def assess(**overrides: Any) -> phase.Assessment:
    facts: dict[str, Any] = {
        "previous": phase.Status.RUNNING,
        "running": True,
        "min_units": 2,
        "desired": 2,
        "in_service": 2,
        "pods": 2,
        "failures": (),
        "last_demand_at": None,
        "now": 10_000.0,
    }
    facts.update(overrides)
    return phase.assess(**facts)


def crash(since: float) -> phase.UnitFailure:
    return phase.UnitFailure(
        unit="shoes-v3-zone-a-1", reason="CrashLoopBackOff", message="exit 1", since=since
    )
