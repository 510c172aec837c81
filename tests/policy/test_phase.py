"""Status (reference names) and Ready/Progressing/Degraded conditions from observed facts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiu.policy import phase

Status = phase.Status
CRASH = phase.UnitFailure(
    unit="shoes-a-1", reason="CrashLoopBackOff", message="exit code 1", since=100.0
)


def _assess(**facts: object) -> phase.Assessment:
    defaults: dict[str, object] = {
        "previous": None,
        "running": True,
        "min_units": 2,
        "desired": 2,
        "in_service": 0,
        "pods": 2,
        "failures": (),
        "last_demand_at": None,
        "now": 200.0,
    }
    defaults.update(facts)
    return phase.assess(**defaults)  # type: ignore[arg-type]


def _conditions(assessment: phase.Assessment) -> dict[str, tuple[str, str]]:
    """Ready, Progressing and Degraded (kstatus's pair is checked on its own)."""
    return {
        c.type: (c.status, c.reason)
        for c in assessment.conditions
        if c.type not in ("Reconciling", "Stalled")
    }


def _kstatus(assessment: phase.Assessment) -> dict[str, tuple[str, str]]:
    return {
        c.type: (c.status, c.reason)
        for c in assessment.conditions
        if c.type in ("Reconciling", "Stalled")
    }


def test_starting_until_min_units_are_in_service() -> None:
    starting = _assess(in_service=1)
    assert starting.status is Status.STARTING
    assert starting.message == "starting: 1 of 2 units in service, 2 needed"
    assert _conditions(starting) == {
        "Ready": ("False", "Starting"),
        "Progressing": ("True", "Starting"),
        "Degraded": ("False", "NoFailures"),
    }
    running = _assess(previous=Status.STARTING, in_service=2)
    assert running.status is Status.RUNNING
    assert running.message == "running: 2 of 2 units in service (min 2)"
    assert _conditions(running) == {
        "Ready": ("True", "InService"),
        "Progressing": ("False", "Stable"),
        "Degraded": ("False", "NoFailures"),
    }
    assert _kstatus(running) == {
        "Reconciling": ("False", "Stable"),
        "Stalled": ("False", "Reconcilable"),
    }


def test_running_below_min_after_a_failure_is_degraded_not_starting() -> None:
    assessment = _assess(previous=Status.RUNNING, in_service=1, failures=[CRASH])
    assert assessment.status is Status.RUNNING
    assert _conditions(assessment) == {
        "Ready": ("True", "InService"),
        "Progressing": ("True", "ScalingUp"),
        "Degraded": ("True", "CrashLoopBackOff"),
    }
    assert assessment.message == (
        "running at reduced capacity: 1 of 2 units in service (min 2); "
        "1 unit failing: shoes-a-1 CrashLoopBackOff for 100 s: exit code 1"
    )


def test_running_with_every_unit_lost_is_not_ready() -> None:
    lost = phase.UnitFailure(unit="shoes-c-1", reason="ZoneUnavailable", message="", since=0.0)
    assessment = _assess(previous=Status.RUNNING, in_service=0, failures=[lost])
    assert assessment.status is Status.RUNNING
    assert _conditions(assessment)["Ready"] == ("False", "NoUnitInService")
    assert _conditions(assessment)["Degraded"] == ("True", "ZoneUnavailable")


def test_failed_when_a_failure_outlasts_the_timeout_while_starting() -> None:
    early = _assess(failures=[CRASH], now=CRASH.since + 599)
    assert early.status is Status.STARTING
    assert _conditions(early)["Degraded"] == ("True", "CrashLoopBackOff")
    failed = _assess(failures=[CRASH], now=CRASH.since + 600)
    assert failed.status is Status.FAILED
    assert _conditions(failed) == {
        "Ready": ("False", "CrashLoopBackOff"),
        "Progressing": ("False", "ProgressDeadlineExceeded"),
        "Degraded": ("True", "CrashLoopBackOff"),
    }
    assert _kstatus(failed) == {
        "Reconciling": ("False", "CrashLoopBackOff"),
        "Stalled": ("True", "CrashLoopBackOff"),
    }
    assert _kstatus(early) == {
        "Reconciling": ("True", "Starting"),
        "Stalled": ("False", "Reconcilable"),
    }
    assert failed.message.startswith("failed: no progress for 600 s; 1 unit failing: shoes-a-1")


def test_failed_recovers_once_the_failure_clears() -> None:
    assert _assess(previous=Status.FAILED, in_service=0).status is Status.STARTING
    assert _assess(previous=Status.FAILED, in_service=2).status is Status.RUNNING


def test_stopping_while_pods_exist_then_stopped() -> None:
    stopping = _assess(previous=Status.RUNNING, running=False, pods=2, failures=[CRASH])
    assert (stopping.status, stopping.message) == (
        Status.STOPPING,
        "stopping: 2 unit pods still running",
    )
    assert _conditions(stopping) == {
        "Ready": ("False", "Stopping"),
        "Progressing": ("True", "Stopping"),
        "Degraded": ("False", "Stopping"),
    }
    stopped = _assess(previous=Status.STOPPING, running=False, pods=0)
    assert stopped.status is Status.STOPPED
    assert _conditions(stopped)["Progressing"] == ("False", "Stopped")


def test_min_zero_without_demand_is_running_idle_at_zero() -> None:
    assessment = _assess(min_units=0, desired=0, in_service=0, pods=0, last_demand_at=80.0)
    assert assessment.status is Status.RUNNING
    ready = assessment.conditions[0]
    assert (ready.type, ready.status, ready.reason, ready.message) == (
        "Ready",
        "True",
        "ScaledToZero",
        "idle: no demand for 120 s; the first request starts a unit",
    )
    never = _assess(min_units=0, desired=0, in_service=0, pods=0)
    assert never.message == "idle: no demand yet; the first request starts a unit"


def test_min_zero_with_demand_starts_then_scales_from_zero() -> None:
    new = _assess(min_units=0, desired=1, in_service=0, pods=1)
    assert new.status is Status.STARTING
    woken = _assess(previous=Status.RUNNING, min_units=0, desired=1, in_service=0, pods=1)
    assert woken.status is Status.RUNNING
    assert _conditions(woken)["Ready"] == ("False", "ScalingFromZero")


def test_scaling_down_is_progressing() -> None:
    assessment = _assess(previous=Status.RUNNING, desired=2, in_service=4)
    assert _conditions(assessment)["Progressing"] == ("True", "ScalingDown")


def test_failures_are_listed_oldest_first_and_capped() -> None:
    failures = [
        phase.UnitFailure(unit=f"u{i}", reason=f"Reason{i}", message="m", since=float(10 - i))
        for i in range(5)
    ]
    degraded = _assess(previous=Status.RUNNING, in_service=2, failures=failures).conditions[2]
    assert degraded.reason == "Reason4"
    assert degraded.message.startswith("5 units failing: u4 Reason4 for 194 s: m; u3")
    assert degraded.message.endswith("; and 2 more")


def test_merge_keeps_the_transition_time_while_the_status_holds() -> None:
    before = phase.merge(
        previous=(),
        current=[phase.Condition("Ready", "False", "Starting", "starting")],
        now=1_700_000_000.0,
        generation=1,
    )
    assert before == (
        phase.RecordedCondition(
            type="Ready",
            status="False",
            reason="Starting",
            message="starting",
            last_transition_time="2023-11-14T22:13:20Z",
            observed_generation=1,
        ),
    )
    same = phase.merge(
        previous=before,
        current=[phase.Condition("Ready", "False", "Other", "still not")],
        now=1_700_000_060.0,
        generation=2,
    )
    assert same[0].last_transition_time == "2023-11-14T22:13:20Z"
    assert (same[0].reason, same[0].observed_generation) == ("Other", 2)
    flipped = phase.merge(
        previous=same,
        current=[phase.Condition("Ready", "True", "InService", "up")],
        now=1_700_000_120.5,
        generation=2,
    )
    assert flipped[0].last_transition_time == "2023-11-14T22:15:20Z"


def test_merge_keeps_conditions_it_does_not_manage() -> None:
    foreign = phase.RecordedCondition(
        type="External",
        status="True",
        reason="X",
        message="",
        last_transition_time="t",
        observed_generation=0,
    )
    merged = phase.merge(
        previous=[foreign],
        current=[phase.Condition("Ready", "True", "InService", "up")],
        now=0.0,
        generation=1,
    )
    assert [c.type for c in merged] == ["Ready", "External"]
    assert merged[1] is foreign


failures = st.lists(
    st.builds(
        phase.UnitFailure,
        unit=st.sampled_from(["u1", "u2", "u3"]),
        reason=st.sampled_from(["CrashLoopBackOff", "ModelLoadFailed", "Unschedulable"]),
        message=st.text(max_size=20),
        since=st.floats(min_value=0, max_value=2000),
    ),
    max_size=4,
)


@settings(deadline=None)
@given(
    previous=st.one_of(st.none(), st.sampled_from(list(Status))),
    running=st.booleans(),
    min_units=st.integers(0, 5),
    desired=st.integers(0, 10),
    in_service=st.integers(0, 10),
    pods=st.integers(0, 10),
    failures=failures,
    now=st.floats(min_value=0, max_value=3000),
)
def test_every_assessment_is_well_formed(
    previous: Status | None,
    running: bool,
    min_units: int,
    desired: int,
    in_service: int,
    pods: int,
    failures: list[phase.UnitFailure],
    now: float,
) -> None:
    assessment = _assess(
        previous=previous,
        running=running,
        min_units=min_units,
        desired=desired,
        in_service=in_service,
        pods=pods,
        failures=failures,
        now=now,
    )
    assert [c.type for c in assessment.conditions] == [
        "Ready",
        "Progressing",
        "Degraded",
        "Reconciling",
        "Stalled",
    ]
    for condition in assessment.conditions:
        assert condition.status in ("True", "False")
        assert re.fullmatch(r"[A-Z][A-Za-z]*", condition.reason)
        assert condition.message
    assert assessment.message
    if not running:
        assert assessment.status in (Status.STOPPING, Status.STOPPED)
    elif previous is Status.RUNNING:
        assert assessment.status is Status.RUNNING
    ready = assessment.conditions[0].status == "True"
    assert not ready or assessment.status is Status.RUNNING
    # kstatus: never both Reconciling and Stalled; Stalled exactly when FAILED.
    by_type = {c.type: c for c in assessment.conditions}
    stalled = by_type["Stalled"].status == "True"
    assert stalled == (assessment.status is Status.FAILED)
    if stalled:
        assert by_type["Reconciling"].status == "False"
    else:
        assert by_type["Reconciling"].status == by_type["Progressing"].status


@pytest.mark.parametrize("status", list(Status))
def test_status_values_are_the_reference_names(status: Status) -> None:
    assert status.value == status.name
