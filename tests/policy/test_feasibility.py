"""Which zones can run a unit: node selector, required node affinity, taints, extended resources."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kiu.policy import feasibility
from kiu.policy.feasibility import Needs, Node, Requirement, Taint, Term, Toleration

GPU_TAINT = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")
GPU_TOLERATION = Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")


def _node(
    name: str,
    zone: str | None,
    *,
    available: bool = True,
    labels: dict[str, str] | None = None,
    taints: tuple[Taint, ...] = (),
    gpus: str | None = None,
) -> Node:
    return Node(
        name=name,
        zone=zone,
        available=available,
        labels=tuple(sorted((labels or {}).items())),
        taints=taints,
        allocatable=(("nvidia.com/gpu", gpus),) if gpus is not None else (),
    )


# The scheduler's rules (k8s.io/api/core/v1 ToleratesTaint), case by case.
@pytest.mark.parametrize(
    ("toleration", "taint", "tolerated"),
    [
        (Toleration(key="k", value="v"), Taint("k", "v", "NoSchedule"), True),
        (Toleration(key="k", value="w"), Taint("k", "v", "NoSchedule"), False),
        (Toleration(key="k", operator="Exists"), Taint("k", "v", "NoExecute"), True),
        (Toleration(key="j", operator="Exists"), Taint("k", "v", "NoSchedule"), False),
        (Toleration(operator="Exists"), Taint("k", "v", "NoSchedule"), True),
        (Toleration(key="k", value="v", effect="NoExecute"), Taint("k", "v", "NoSchedule"), False),
        (Toleration(key="k", value="v", effect="NoSchedule"), Taint("k", "v", "NoSchedule"), True),
        (Toleration(key="k"), Taint("k", "", "NoSchedule"), True),
        (Toleration(), Taint("k", "", "NoSchedule"), False),  # Equal with no key: nothing
    ],
)
def test_toleration_matches_as_the_scheduler_does(
    toleration: Toleration, taint: Taint, tolerated: bool
) -> None:
    assert toleration.tolerates(taint) is tolerated


@pytest.mark.parametrize(
    ("requirement", "labels", "matches"),
    [
        (Requirement("tier", "In", ("a", "b")), {"tier": "b"}, True),
        (Requirement("tier", "In", ("a",)), {}, False),
        (Requirement("tier", "NotIn", ("a",)), {}, True),
        (Requirement("tier", "NotIn", ("a",)), {"tier": "a"}, False),
        (Requirement("tier", "Exists"), {"tier": ""}, True),
        (Requirement("tier", "DoesNotExist"), {"tier": "a"}, False),
        (Requirement("cores", "Gt", ("8",)), {"cores": "16"}, True),
        (Requirement("cores", "Gt", ("8",)), {"cores": "8"}, False),
        (Requirement("cores", "Lt", ("8",)), {"cores": "4"}, True),
        (Requirement("cores", "Lt", ("8",)), {"cores": "many"}, False),
        (Requirement("cores", "Lt", ("8",)), {}, False),
    ],
)
def test_node_requirements(requirement: Requirement, labels: dict[str, str], matches: bool) -> None:
    assert requirement.matches(labels) is matches


def test_affinity_terms_are_ored_and_an_empty_term_matches_nothing() -> None:
    node = _node("n1", "a", labels={"tier": "gold"})
    gold = Term(expressions=(Requirement("tier", "In", ("gold",)),))
    silver = Term(expressions=(Requirement("tier", "In", ("silver",)),))
    by_name = Term(fields=(Requirement("metadata.name", "In", ("n1",)),))
    assert feasibility.misfit(node, Needs(terms=(silver, gold))) is None
    assert feasibility.misfit(node, Needs(terms=(by_name,))) is None
    assert feasibility.misfit(node, Needs(terms=(silver,))) == "required node affinity"
    assert feasibility.misfit(node, Needs(terms=(Term(),))) == "required node affinity"
    assert feasibility.misfit(node, Needs()) is None


def test_gpus_in_two_of_three_zones() -> None:
    nodes = [
        _node("a-cpu", "zone-a"),
        _node("a-gpu", "zone-a", taints=(GPU_TAINT,), gpus="2"),
        _node("b-gpu", "zone-b", taints=(GPU_TAINT,), gpus="2"),
        _node("c-cpu-1", "zone-c"),
        _node("c-cpu-2", "zone-c"),
        _node("unzoned", None, taints=(GPU_TAINT,), gpus="8"),
    ]
    needs = Needs(tolerations=(GPU_TOLERATION,), extended={"nvidia.com/gpu": "1"})
    fit = feasibility.fit(nodes, needs)
    assert fit.known == {"zone-a", "zone-b", "zone-c"}
    assert fit.feasible == fit.healthy == {"zone-a", "zone-b"}
    assert fit.skipped == {"zone-c": "no node fits (2 nodes: allocatable nvidia.com/gpu 0 < 1)"}
    # Two GPUs per unit still fit; three do not fit anywhere.
    assert feasibility.fit(
        nodes, Needs(tolerations=(GPU_TOLERATION,), extended={"nvidia.com/gpu": "2"})
    ).feasible == {"zone-a", "zone-b"}
    assert not feasibility.fit(
        nodes, Needs(tolerations=(GPU_TOLERATION,), extended={"nvidia.com/gpu": "3"})
    ).feasible


def test_a_tainted_pool_needs_its_toleration() -> None:
    pool = Taint(key="kiu.dev/pool", value="inference", effect="NoSchedule")
    nodes = [
        _node(f"{zone}-pool", zone, labels={"kiu.dev/pool": "inference"}, taints=(pool,))
        for zone in ("zone-a", "zone-b")
    ] + [_node("c-cpu", "zone-c")]
    selector = {"kiu.dev/pool": "inference"}
    tolerated = feasibility.fit(
        nodes,
        Needs(
            node_selector=selector, tolerations=(Toleration(key="kiu.dev/pool", value="inference"),)
        ),
    )
    assert tolerated.feasible == {"zone-a", "zone-b"}
    assert tolerated.skipped == {
        "zone-c": "no node fits (1 node: node selector kiu.dev/pool=inference)"
    }
    untolerated = feasibility.fit(nodes, Needs(node_selector=selector))
    assert not untolerated.feasible
    assert untolerated.skipped["zone-a"] == (
        "no node fits (1 node: untolerated taint kiu.dev/pool=inference:NoSchedule)"
    )


def test_health_is_not_fit() -> None:
    """A zone whose fitting nodes are down is lost (the outage policy decides), not skipped;
    the lifecycle controller's taints and PreferNoSchedule never make a node unfit."""
    down = (Taint("node.kubernetes.io/unreachable", "", "NoExecute"),)
    nodes = [
        _node("a1", "zone-a", available=False, taints=down),
        _node("b1", "zone-b", taints=(Taint("spot", "true", "PreferNoSchedule"),)),
    ]
    fit = feasibility.fit(nodes, Needs())
    assert fit.feasible == {"zone-a", "zone-b"}
    assert fit.healthy == {"zone-b"}
    assert fit.skipped == {}


def test_the_reason_lists_the_commonest_misfits_first() -> None:
    nodes = [
        _node("1", "z", taints=(Taint("a", "", "NoSchedule"),)),
        _node("2", "z", taints=(Taint("a", "", "NoSchedule"),)),
        _node("3", "z", taints=(Taint("b", "", "NoSchedule"),)),
        _node("4", "z", taints=(Taint("c", "", "NoExecute"),)),
        _node("5", "z", taints=(Taint("d", "", "NoSchedule"),)),
    ]
    assert feasibility.fit(nodes, Needs()).skipped["z"] == (
        "no node fits (2 nodes: untolerated taint a:NoSchedule; 1 node: untolerated taint"
        " b:NoSchedule; 1 node: untolerated taint c:NoExecute; and 1 more)"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", Decimal(4)),
        (2, Decimal(2)),
        ("500m", Decimal("0.5")),
        ("1Ki", Decimal(1024)),
        ("2G", Decimal(2_000_000_000)),
        ("1e3", Decimal(1000)),
        ("lots", Decimal(0)),
        ("1Qi", Decimal(0)),
    ],
)
def test_quantities(text: str | int, value: Decimal) -> None:
    assert feasibility.quantity(text) == value


@pytest.mark.parametrize(
    ("resource", "extended"),
    [
        ("nvidia.com/gpu", True),
        ("amd.com/gpu", True),
        ("cpu", False),
        ("memory", False),
        ("hugepages-2Mi", False),
        ("kubernetes.io/batch-cpu", False),
        ("example.kubernetes.io/thing", False),
    ],
)
def test_extended_resources(resource: str, extended: bool) -> None:
    assert feasibility.is_extended(resource) is extended
