"""Facts read from Node, Pod and Deployment bodies, and the status merge patch."""

from __future__ import annotations

from typing import Any

from kiu.k8s import observations
from kiu.k8s.status import merge_patch


def _node(name: str, zone: str, *, ready: bool = True, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_zone_health_needs_one_ready_schedulable_node() -> None:
    nodes = [
        observations.node(_node("a1", "a")),
        observations.node(_node("a2", "a", ready=False)),
        observations.node(_node("b1", "b", ready=False)),
        observations.node(_node("c1", "c", unschedulable=True)),
        observations.node(
            _node(
                "d1", "d", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
            )
        ),
        observations.node(
            _node("e1", "e", taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}])
        ),
    ]
    zones = observations.zones(nodes)
    assert zones.known == {"a", "b", "c", "d", "e"}
    assert zones.healthy == {"a", "e"}


def _pod(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "v-zone-a-1",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"kiu.dev/zone": "zone-a", "kiu.dev/projectversion": "v"},
        },
        "status": status,
    }


def test_a_ready_unit() -> None:
    unit = observations.unit(
        _pod(phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    )
    assert unit.ready
    assert unit.zone == "zone-a"
    assert unit.failure is None
    assert unit.created == 1735689600.0
    assert observations.owner_label(_pod()) == "v"


def test_a_crash_looping_unit_says_why() -> None:
    unit = observations.unit(
        _pod(
            phase="Running",
            containerStatuses=[
                {
                    "name": "unit",
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 3,
                            # FallbackToLogsOnError: the log's tail, the cause last
                            "message": "INFO starting\nWARNING slow disk\nmodel not found\n\n",
                        }
                    },
                }
            ],
        )
    )
    assert not unit.ready
    assert unit.failure == observations.Failure(
        reason="CrashLoopBackOff", message="container unit exited with code 3: model not found"
    )


def test_an_unschedulable_unit_has_a_since() -> None:
    unit = observations.unit(
        _pod(
            phase="Pending",
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "lastTransitionTime": "2025-01-01T00:01:00Z",
                }
            ],
        )
    )
    assert unit.unschedulable_since == 1735689660.0
    assert unit.failure is None


def test_a_terminating_unit_is_not_ready() -> None:
    body = _pod(phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    body["metadata"]["deletionTimestamp"] = "2025-01-01T00:02:00Z"
    unit = observations.unit(body)
    assert unit.terminating
    assert not unit.ready


def test_owned_reads_the_hash_replicas_and_owner() -> None:
    owned = observations.owned(
        {
            "kind": "Deployment",
            "metadata": {
                "name": "v-zone-a",
                "labels": {"kiu.dev/zone": "zone-a"},
                "annotations": {"kiu.dev/spec-hash": "abc"},
                "ownerReferences": [
                    {"kind": "ReplicaSet", "uid": "x", "controller": True},
                    {"kind": "ProjectVersion", "uid": "u1", "controller": True},
                ],
            },
            "spec": {"replicas": 2},
        }
    )
    assert (owned.zone, owned.replicas, owned.spec_hash, owned.owner_uid) == (
        "zone-a",
        2,
        "abc",
        "u1",
    )


def test_merge_patch_sends_only_changes_and_removes_gone_zones() -> None:
    old = {
        "status": "RUNNING",
        "zones": {"a": {"desired": 1, "inService": 1}, "b": {"desired": 1, "inService": 0}},
        "kopf": {"progress": {}},
        "demandTps": 1.5,
    }
    new = {
        "status": "RUNNING",
        "zones": {"a": {"desired": 2, "inService": 1}},
        "demandTps": None,
        "arn": "arn:x",
    }
    assert merge_patch(old, new) == {
        "zones": {"a": {"desired": 2}, "b": None},
        "demandTps": None,
        "arn": "arn:x",
    }
    assert merge_patch(old, {"status": "RUNNING", "demandTps": 1.5}) == {}
    assert merge_patch({}, {"demandTps": None}) == {}
