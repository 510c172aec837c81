"""kstatus (sigs.k8s.io/cli-utils, what Flux, kubectl-style waiters and cli-utils read)
judges kiu's statuses as docs/gitops.md says: the library itself, built from
hack/go/kstatus, reads statuses made by kiu's own policy."""

from __future__ import annotations

from typing import Any

import pytest

from kiu.policy import phase
from tests.policy import kstatus_reader
from tests.policy.statuses import assess, crash, projectversion


@pytest.fixture(scope="module")
def kstatus() -> Any:
    return kstatus_reader.reader()


CASES = {
    "running": (assess(), "Current"),
    "idle at zero": (assess(min_units=0, desired=0, in_service=0, pods=0), "Current"),
    "reduced capacity": (assess(in_service=1, failures=(crash(9_990.0),)), "InProgress"),
    "scaling up": (assess(desired=3), "InProgress"),
    "starting": (assess(previous=None, in_service=0), "InProgress"),
    "starting with a failure": (
        assess(previous=None, in_service=0, failures=(crash(9_990.0),)),
        "InProgress",
    ),
    "failed": (
        assess(previous=phase.Status.STARTING, in_service=0, failures=(crash(0.0),)),
        "Failed",
    ),
    "stopping": (assess(running=False, pods=2), "InProgress"),
    "stopped": (assess(running=False, pods=0), "InProgress"),
}


@pytest.mark.parametrize("case", CASES)
def test_kstatus_reads_each_status(kstatus: Any, case: str) -> None:
    assessment, expected = CASES[case]
    assert kstatus(projectversion(assessment)) == [expected]


def test_a_spec_that_cannot_be_met_is_failed_even_while_units_serve(kstatus: Any) -> None:
    running = assess()
    ready, progressing, degraded = running.conditions[:3]
    stalled = phase.judge(
        status=running.status,
        message=running.message,
        ready=ready,
        progressing=progressing,
        degraded=degraded,
        stalled=("InvalidSpec", "spec.zones: no node has zone-x"),
    )
    assert kstatus(projectversion(stalled)) == ["Failed"]


def test_an_unobserved_generation_is_in_progress_whatever_the_conditions(kstatus: Any) -> None:
    failed = CASES["failed"][0]
    assert kstatus(projectversion(failed, generation=4, observed=3)) == ["InProgress"]
    assert kstatus(projectversion(assess(), generation=4, observed=3)) == ["InProgress"]


@pytest.mark.parametrize("case", CASES)
def test_reconciling_and_stalled_are_never_both_true(case: str) -> None:
    conditions = {c.type: c.status for c in CASES[case][0].conditions}
    assert not (conditions["Reconciling"] == "True" and conditions["Stalled"] == "True")
    assert conditions["Reconciling"] == conditions["Progressing"] or conditions["Stalled"] == "True"
