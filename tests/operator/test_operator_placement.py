"""Placement on a heterogeneous cluster, on the real scheduler: the node pools of
hack/nodepools.json (GPUs in two of three zones, a tainted inference pool, an
accelerator pool with room for one unit in zone-a), the placement fields of
spec.inferenceUnit, and health as kstatus and `kubectl wait` read it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.fixtures import Cluster, wait_for
from tests.operator import harness
from tests.operator.harness import Operator, condition, projectversion, replicas, wait_status
from tests.policy import kstatus_reader

pytestmark = pytest.mark.cluster

INFERENCE_TOLERATION = {
    "key": "kiu.dev/pool",
    "operator": "Equal",
    "value": "inference",
    "effect": "NoSchedule",
}


@pytest.fixture(scope="module")
def kstatus() -> Any:
    return kstatus_reader.reader()


def _triton(name: str, units: int, **unit: Any) -> dict[str, Any]:
    """A triton version; pool nodes are simulated, so its units are Ready without Triton."""
    body = projectversion(name, minInferenceUnits=units)
    body["spec"]["inferenceUnit"] = {"runtime": "triton", "tps": 5, **unit}
    return body


def _nodes(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return sorted(pod.spec.node_name for pod in harness.units(cluster, namespace, name))


def _wait_ready(cluster: Cluster, namespace: str, name: str) -> None:
    cluster.kubectl(
        "wait", "--for=condition=Ready", f"pjv/{name}", "-n", namespace, "--timeout=120s"
    )


def test_the_node_pools_are_registered(cluster: Cluster) -> None:
    """hack/nodepools.json as the scheduler sees it: zones, labels, taints, resources."""
    items = cluster.core().list_node(label_selector="kiu.dev/node-mode=pool").items
    nodes = {node.metadata.name: node for node in items}
    assert sorted(nodes) == [
        "kiu-accel-small-zone-a-1",
        "kiu-accel-zone-b-1",
        "kiu-gpu-zone-a-1",
        "kiu-gpu-zone-b-1",
        "kiu-inference-zone-a-1",
        "kiu-inference-zone-b-1",
    ]
    gpu = nodes["kiu-gpu-zone-a-1"]
    assert gpu.metadata.labels["topology.kubernetes.io/zone"] == "zone-a"
    assert gpu.metadata.labels["kiu.dev/pool"] == "gpu"
    assert [(t.key, t.value, t.effect) for t in gpu.spec.taints] == [
        ("nvidia.com/gpu", "present", "NoSchedule")
    ]
    assert gpu.status.allocatable["nvidia.com/gpu"] == "2"
    assert nodes["kiu-accel-small-zone-a-1"].status.allocatable["kiu.dev/accelerator"] == "1"
    assert all(cluster.node_ready(name) for name in nodes)


def test_gpu_units_spread_over_the_zones_that_have_gpus(
    cluster: Cluster, namespace: str, operator: Operator, kstatus: Any
) -> None:
    cluster.apply(_triton("gpu", 4, resources={"limits": {"nvidia.com/gpu": 1}}), namespace)
    _wait_ready(cluster, namespace, "gpu")
    current = wait_status(cluster, namespace, "gpu", status="RUNNING", inServiceInferenceUnits=4)
    assert replicas(cluster, namespace, "gpu") == {"zone-a": 2, "zone-b": 2}
    assert _nodes(cluster, namespace, "gpu") == ["kiu-gpu-zone-a-1"] * 2 + ["kiu-gpu-zone-b-1"] * 2
    skipped = current["zones"]["zone-c"]
    assert (skipped["desired"], skipped["inService"]) == (0, 0)
    assert skipped["skipped"].startswith("no node fits (")
    assert "allocatable nvidia.com/gpu 0 < 1" in skipped["skipped"]
    assert "zones skipped: zone-c: no node fits" in condition(current, "Ready")["message"]
    assert harness.wait_event(cluster, namespace, "gpu", "ZonesSkipped")
    assert kstatus(harness.get(cluster, namespace, "gpu")) == ["Current"]
    # kubectl: the Ready condition in the default columns, the ARN with -o wide, and the
    # scale subresource: the floor as spec, the units in service as status.
    table = cluster.kubectl("get", "pjv", "gpu", "-n", namespace).stdout.split()
    assert table[:4] == ["NAME", "STATUS", "READY", "REASON"]
    assert table[table.index("gpu") : table.index("gpu") + 4] == [
        "gpu",
        "RUNNING",
        "True",
        "InService",
    ]
    wide = cluster.kubectl("get", "pjv", "gpu", "-n", namespace, "-o", "wide").stdout
    assert "ARN" in wide.splitlines()[0]
    assert current["arn"] in wide
    scale = json.loads(
        cluster.kubectl(
            "get", "pjv", "gpu", "-n", namespace, "--subresource=scale", "-o", "json"
        ).stdout
    )
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["replicas"]) == (
        "Scale",
        4,
        4,
    )
    assert "kiu.dev/projectversion=gpu" in scale["status"]["selector"]


def test_a_tainted_pool_with_every_placement_field(
    cluster: Cluster, namespace: str, operator: Operator, placement_objects: dict[str, Any]
) -> None:
    cluster.apply(
        _triton(
            "pooled",
            2,
            nodeSelector={"kiu.dev/pool": "inference"},
            tolerations=[INFERENCE_TOLERATION],
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/os",
                                        "operator": "In",
                                        "values": ["linux"],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
            priorityClassName=placement_objects["priority_class"],
            serviceAccountName="model-reader",
            runtimeClassName=placement_objects["runtime_class"],
            imagePullSecrets=[{"name": "registry"}],
            labels={"team": "retail"},
            annotations={"example.com/owner": "retail"},
            env=[{"name": "LOG_VERBOSE", "value": "1"}],
        ),
        namespace,
    )
    _wait_ready(cluster, namespace, "pooled")
    current = wait_status(cluster, namespace, "pooled", status="RUNNING", inServiceInferenceUnits=2)
    assert replicas(cluster, namespace, "pooled") == {"zone-a": 1, "zone-b": 1}
    assert _nodes(cluster, namespace, "pooled") == [
        "kiu-inference-zone-a-1",
        "kiu-inference-zone-b-1",
    ]
    assert "node selector kiu.dev/pool=inference" in current["zones"]["zone-c"]["skipped"]
    for pod in harness.units(cluster, namespace, "pooled"):
        spec = pod.spec
        assert spec.priority == placement_objects["priority"]
        assert spec.service_account_name == "model-reader"
        assert spec.runtime_class_name == placement_objects["runtime_class"]
        assert [s.name for s in spec.image_pull_secrets] == ["registry"]
        assert pod.metadata.labels["team"] == "retail"
        assert pod.metadata.annotations["example.com/owner"] == "retail"
        assert {"name": "LOG_VERBOSE", "value": "1"} in [
            {"name": e.name, "value": e.value} for e in spec.containers[0].env
        ]
        assert spec.node_selector["kiu.dev/pool"] == "inference"
        assert spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution


def test_without_the_toleration_the_version_fails_at_once(
    cluster: Cluster, namespace: str, operator: Operator, kstatus: Any
) -> None:
    cluster.apply(_triton("untolerated", 2, nodeSelector={"kiu.dev/pool": "inference"}), namespace)
    current = wait_status(cluster, namespace, "untolerated", status="FAILED")
    stalled = condition(current, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "NoFeasibleZone")
    # The pool's nodes turn the unit away by their taint, every other node by its labels.
    pool = "1 node: untolerated taint kiu.dev/pool=inference:NoSchedule"
    for zone in ("zone-a", "zone-b"):
        why = stalled["message"].split(f"{zone}: no node fits (", 1)[1].split(")", 1)[0]
        assert pool in why
    assert "zone-c: no node fits (" in stalled["message"]
    assert condition(current, "Reconciling")["status"] == "False"
    assert replicas(cluster, namespace, "untolerated") == {}  # nothing that could never schedule
    assert kstatus(harness.get(cluster, namespace, "untolerated")) == ["Failed"]
    wait = cluster.kubectl(
        "wait",
        "--for=condition=Ready",
        "pjv/untolerated",
        "-n",
        namespace,
        "--timeout=2s",
        check=False,
    )
    assert wait.returncode != 0


def test_a_full_zone_waits_then_rebalances(
    cluster: Cluster, namespace: str, start_operator: Any, kstatus: Any
) -> None:
    """accel: room for one unit in zone-a, four in zone-b, none in zone-c. The failure
    timeout is long, so the wait is seen as a wait, not as a start that failed."""
    start_operator("--failure-timeout", "600")
    cluster.apply(
        _triton(
            "accel",
            4,
            resources={"limits": {"kiu.dev/accelerator": 1}},
            tolerations=[{"key": "kiu.dev/pool", "operator": "Exists", "effect": "NoSchedule"}],
        ),
        namespace,
    )
    current = wait_status(
        cluster,
        namespace,
        "accel",
        status="STARTING",
        inServiceInferenceUnits=3,
    )
    wait_for(
        lambda: (
            condition(harness.status(cluster, namespace, "accel"), "Degraded")["reason"]
            == "InsufficientCapacity"
        ),
        timeout=60,
        what="the pending unit reported as lacking room",
    )
    assert replicas(cluster, namespace, "accel") == {"zone-a": 2, "zone-b": 2}
    assert "accelerator" in current["zones"]["zone-c"]["skipped"]
    assert harness.wait_event(cluster, namespace, "accel", "ZoneFullWait")
    assert kstatus(harness.get(cluster, namespace, "accel")) == ["InProgress"]

    harness.patch_spec(cluster, namespace, "accel", zoneOutagePolicy="Rebalance")
    wait_status(cluster, namespace, "accel", status="RUNNING", inServiceInferenceUnits=4)
    assert replicas(cluster, namespace, "accel") == {"zone-a": 2, "zone-b": 3}
    assert harness.wait_event(cluster, namespace, "accel", "ZoneFullRebalance")


@pytest.fixture
def placement_objects(cluster: Cluster, namespace: str) -> Iterator[dict[str, Any]]:
    """A PriorityClass and a RuntimeClass (cluster-wide, named after the namespace) and a
    ServiceAccount: the objects the placement fields refer to, which admission checks."""
    scheduling = client.SchedulingV1Api(cluster.api)
    node = client.NodeV1Api(cluster.api)
    name = f"kiu-{namespace}"[:63]
    scheduling.create_priority_class(
        {"metadata": {"name": name}, "value": 1000, "description": "kiu placement test"}
    )
    node.create_runtime_class({"metadata": {"name": name}, "handler": "runc"})
    cluster.core().create_namespaced_service_account(
        namespace, {"metadata": {"name": "model-reader"}}
    )
    try:
        yield {"priority_class": name, "priority": 1000, "runtime_class": name}
    finally:
        scheduling.delete_priority_class(name)
        node.delete_runtime_class(name)


def test_a_new_version_is_in_progress_before_any_operator_sees_it(
    cluster: Cluster, namespace: str, crd: None, kstatus: Any
) -> None:
    """The CRD defaults status.observedGeneration to 0, so kstatus does not take a version
    nobody reconciled yet as current."""
    cluster.apply(projectversion("unseen"), namespace)
    body = harness.get(cluster, namespace, "unseen")
    assert body["status"] == {"observedGeneration": 0}
    assert body["metadata"]["generation"] == 1
    assert kstatus(body) == ["InProgress"]
