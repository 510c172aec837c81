"""kstatus (sigs.k8s.io/cli-utils, what Flux, kubectl-style waiters and cli-utils read)
judges kiu's statuses as docs/gitops.md says: the library itself, built from
hack/go/kstatus, reads statuses made by kiu's own policy."""

from __future__ import annotations

from typing import Any

import pytest

from kiu.policy import phase
from tests.policy import kstatus_reader


@pytest.fixture(scope="module")
def kstatus() -> Any:
    return kstatus_reader.reader()


def _object(assessment: phase.Assessment, *, generation: int = 3, observed: int = 3) -> dict:
    return {
        "apiVersion": "kiu.dev/v1alpha1",
        "kind": "ProjectVersion",
        "metadata": {"name": "shoes-v3", "namespace": "retail", "generation": generation},
        "status": {
            "status": str(assessment.status),
            "observedGeneration": observed,
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
        },
    }


def _assess(**overrides: Any) -> phase.Assessment:
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
    return phase.assess(**{**facts, **overrides})


def _crash(since: float) -> phase.UnitFailure:
    return phase.UnitFailure(unit="u-1", reason="CrashLoopBackOff", message="exit 1", since=since)


CASES = {
    "running": (_assess(), "Current"),
    "idle at zero": (_assess(min_units=0, desired=0, in_service=0, pods=0), "Current"),
    "reduced capacity": (_assess(in_service=1, failures=(_crash(9_990.0),)), "InProgress"),
    "scaling up": (_assess(desired=3), "InProgress"),
    "starting": (_assess(previous=None, in_service=0), "InProgress"),
    "starting with a failure": (
        _assess(previous=None, in_service=0, failures=(_crash(9_990.0),)),
        "InProgress",
    ),
    "failed": (
        _assess(previous=phase.Status.STARTING, in_service=0, failures=(_crash(0.0),)),
        "Failed",
    ),
    "stopping": (_assess(running=False, pods=2), "InProgress"),
    "stopped": (_assess(running=False, pods=0), "InProgress"),
}


@pytest.mark.parametrize("case", CASES)
def test_kstatus_reads_each_status(kstatus: Any, case: str) -> None:
    assessment, expected = CASES[case]
    assert kstatus(_object(assessment)) == [expected]


def test_a_spec_that_cannot_be_met_is_failed_even_while_units_serve(kstatus: Any) -> None:
    running = _assess()
    ready, progressing, degraded = running.conditions[:3]
    stalled = phase.judge(
        status=running.status,
        message=running.message,
        ready=ready,
        progressing=progressing,
        degraded=degraded,
        stalled=("InvalidSpec", "spec.zones: no node has zone-x"),
    )
    assert kstatus(_object(stalled)) == ["Failed"]


def test_an_unobserved_generation_is_in_progress_whatever_the_conditions(kstatus: Any) -> None:
    failed = CASES["failed"][0]
    assert kstatus(_object(failed, generation=4, observed=3)) == ["InProgress"]
    assert kstatus(_object(_assess(), generation=4, observed=3)) == ["InProgress"]


@pytest.mark.parametrize("case", CASES)
def test_reconciling_and_stalled_are_never_both_true(case: str) -> None:
    conditions = {c.type: c.status for c in CASES[case][0].conditions}
    assert not (conditions["Reconciling"] == "True" and conditions["Stalled"] == "True")
    assert conditions["Reconciling"] == conditions["Progressing"] or conditions["Stalled"] == "True"
