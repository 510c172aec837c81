"""Facts read from Node, Pod and Deployment bodies, and the status merge patch."""

from __future__ import annotations

from typing import Any

from kiu.k8s import observations
from kiu.k8s.status import merge_patch
from kiu.policy import feasibility


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
    gpu = feasibility.Toleration(key="nvidia.com/gpu", operator="Exists")
    zones = feasibility.fit(nodes, feasibility.Needs(tolerations=(gpu,)))
    assert zones.known == {"a", "b", "c", "d", "e"}
    assert zones.feasible == {"a", "b", "c", "d", "e"}  # health is not fit
    assert zones.healthy == {"a", "e"}
    untolerated = feasibility.fit(nodes, feasibility.Needs())
    assert untolerated.healthy == {"a"}
    assert untolerated.skipped == {
        "e": "no node fits (1 node: untolerated taint nvidia.com/gpu:NoSchedule)"
    }


def test_node_facts_keep_labels_taints_and_extended_resources_only() -> None:
    body = _node("g1", "a", taints=[{"key": "pool", "value": "gpu", "effect": "NoSchedule"}])
    body["status"]["allocatable"] = {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "2"}
    node = observations.node(body)
    assert node.labels == (("topology.kubernetes.io/zone", "a"),)
    assert node.taints == (feasibility.Taint(key="pool", value="gpu", effect="NoSchedule"),)
    assert node.allocatable == (("nvidia.com/gpu", "2"),)
    assert hash(node) == hash(observations.node(body))  # comparable across watch events


def test_needs_read_from_a_pod_template() -> None:
    template = {
        "spec": {
            "nodeSelector": {"pool": "gpu"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "tier", "operator": "In", "values": ["a"]}
                                ]
                            }
                        ]
                    }
                }
            },
            "tolerations": [{"key": "pool", "operator": "Equal", "value": "gpu"}],
            "containers": [
                {"resources": {"limits": {"nvidia.com/gpu": 1, "cpu": "2"}}},
                {"resources": {"requests": {"nvidia.com/gpu": "1"}}},
            ],
        }
    }
    needs = observations.needs(template)
    assert needs.node_selector == {"pool": "gpu"}
    assert needs.terms == (
        feasibility.Term(expressions=(feasibility.Requirement("tier", "In", ("a",)),)),
    )
    assert needs.tolerations == (feasibility.Toleration(key="pool", value="gpu"),)
    assert needs.extended == {"nvidia.com/gpu": "2"}
    assert observations.needs({}) == feasibility.Needs()


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
