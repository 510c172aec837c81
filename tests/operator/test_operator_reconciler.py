"""The reconciler against an in-memory API: what it applies, writes and announces.

The API is faked at the single point where kiu talks HTTP (`kiu.k8s.rest.call`),
so everything above it (apply, status patches, Events, the policy calls) runs
as in the operator. End-to-end behaviour on a real cluster is in
test_operator_cluster.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import generate_latest

from kiu.controller import metrics, reconciler, templates
from kiu.controller.config import Config
from kiu.k8s import errors, events, observations, rest
from kiu.manifests import workload

ZONES = ("zone-a", "zone-b", "zone-c")
NOW = 1_750_000_000.0
TEMPLATE = {
    "spec": {
        "containers": [
            {
                "name": "unit",
                "image": "unit:1",
                "ports": [{"name": "http", "containerPort": 8000}],
            }
        ]
    }
}


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class World:
    """One ProjectVersion, its nodes, units and applied objects; a fake API server."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.body: dict[str, Any] = {
            "apiVersion": "kiu.dev/v1alpha1",
            "kind": "ProjectVersion",
            "metadata": {
                "name": "shoes",
                "namespace": "retail",
                "uid": "uid-1",
                "generation": 1,
                "creationTimestamp": "2025-06-01T00:00:00Z",
            },
            "spec": {
                "project": "shoes",
                "model": {"name": "m", "repository": "/models", "task": "Classification"},
                **spec,
            },
        }
        self.nodes = dict.fromkeys(ZONES, True)
        self.pool: list[dict[str, Any]] = []
        """Node bodies next to the one plain node per zone (labels, taints, resources)."""
        self.objects: dict[str, dict[str, Any]] = {}
        self.units: list[observations.Unit] = []
        self.calls: list[tuple[str, str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.refuse = False
        self.now = NOW
        self.reconciler = reconciler.Reconciler(
            api=None,  # type: ignore[arg-type]  # rest.call is replaced by World.call
            config=Config(evaluation_period=5.0, failure_timeout=60.0, billing_period=60.0),
            recorder=events.Recorder(
                None,  # type: ignore[arg-type]  # rest.call is replaced by World.call
                component="kiu-operator",
                instance="test",
                clock=self.clock,
            ),
            clock=self.clock,
        )

    def clock(self) -> float:
        return self.now

    async def call(self, _: object, *, method: str, path: str, body: Any = None, **__: Any) -> Any:
        self.calls.append((method, path, copy.deepcopy(body)))
        if path.endswith("/status"):
            _merge(self.body.setdefault("status", {}), body["status"])
            return self.body
        if path.endswith("/events") and method == "POST":
            self.events.append((body["type"], body["reason"], body["message"]))
            return {"metadata": {"name": f"e{len(self.events)}"}}
        if "/events/" in path:
            return {}
        if method == "PATCH":
            if self.refuse and "/deployments/" in path:
                raise errors.Invalid("spec.template: field not declared in schema", status=422)
            self.objects[path] = copy.deepcopy(body)
            return body
        if method == "DELETE":
            self.objects.pop(path, None)
            return {}
        raise AssertionError(f"unexpected {method} {path}")

    def spec(self, **changes: Any) -> None:
        self.body["spec"].update(changes)
        self.body["metadata"]["generation"] += 1

    def run_units(self, *, ready: bool = True) -> None:
        """Units as the Deployments ask for them, all ready (or all starting)."""
        self.units = [
            observations.Unit(
                name=f"{d['metadata']['name']}-{n}",
                zone=d["metadata"]["labels"][workload.ZONE_LABEL],
                ready=ready,
                terminating=False,
                created=self.now,
                unschedulable_since=None,
                failure=None,
            )
            for d in self.deployments().values()
            for n in range(d["spec"]["replicas"])
        ]

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {
            obj["metadata"]["labels"][workload.ZONE_LABEL]: obj
            for obj in self.objects.values()
            if obj["kind"] == "Deployment"
        }

    def replicas(self) -> dict[str, int]:
        return {zone: d["spec"]["replicas"] for zone, d in sorted(self.deployments().items())}

    async def reconcile(self) -> list[tuple[str, str, Any]]:
        """Reconcile once with caches as a watch would show them; the calls it made."""
        self.calls = []
        nodes = [
            observations.node(
                {
                    "metadata": {
                        "name": f"node-{zone}",
                        "labels": {workload.TOPOLOGY_ZONE_LABEL: zone},
                    },
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True" if up else "False"}]
                    },
                }
            )
            for zone, up in self.nodes.items()
        ] + [observations.node(body) for body in self.pool]
        key = ("retail", "shoes")
        self.reconciler.caches = reconciler.Caches(
            projectversions={key: [copy.deepcopy(self.body)]},
            units={key: list(self.units)},
            owned=({key: [observations.owned(obj) for obj in self.objects.values()]},),
            nodes={"nodes": nodes},
        )
        await self.reconciler.reconcile(key)
        return self.calls

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.body.get("status") or {})

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == kind)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Callable[..., World]:
    """Makes a World from spec fields; it is the API server for the test."""

    def make(**spec: Any) -> World:
        w = World(spec)
        monkeypatch.setattr(rest, "call", w.call)
        return w

    monkeypatch.setattr(templates, "pod_template", lambda **_: copy.deepcopy(TEMPLATE))
    return make


async def test_min_three_places_one_unit_per_zone_and_runs(world: Any) -> None:
    w = world(minInferenceUnits=3)
    await w.reconcile()
    assert w.replicas() == {"zone-a": 1, "zone-b": 1, "zone-c": 1}
    kinds = sorted(obj["kind"] for obj in w.objects.values())
    assert kinds == ["Deployment", "Deployment", "Deployment", "PodDisruptionBudget", "Service"]
    assert w.status["status"] == "STARTING"
    assert w.status["desiredInferenceUnits"] == 3
    assert w.status["inServiceInferenceUnits"] == 0
    assert w.status["arn"] == (
        "arn:kiu:rekognition:retail:000000000000:project/shoes/version/shoes/1748736000000"
    )
    assert ("Normal", "ScaleUp") in [(t, r) for t, r, _ in w.events]

    w.run_units()
    w.now += 5
    await w.reconcile()
    assert w.status["status"] == "RUNNING"
    assert w.status["inServiceInferenceUnits"] == 3
    assert w.status["tpsLimit"] == 15
    assert w.status["zones"] == {z: {"desired": 1, "inService": 1} for z in ZONES}
    assert w.condition("Ready")["status"] == "True"
    assert w.condition("Ready")["observedGeneration"] == 1
    assert w.status["selector"] == (
        "app.kubernetes.io/component=inference-unit,kiu.dev/projectversion=shoes"
    )

    # Nothing changed: no request at all.
    w.now += 1
    assert await w.reconcile() == []


async def test_resize_changes_replicas_only(world: Any) -> None:
    w = world(minInferenceUnits=3)
    await w.reconcile()
    w.run_units()
    await w.reconcile()
    templates_before = {z: d["spec"]["template"] for z, d in w.deployments().items()}

    w.spec(minInferenceUnits=5)
    calls = await w.reconcile()
    assert w.replicas() == {"zone-a": 2, "zone-b": 2, "zone-c": 1}
    assert {z: d["spec"]["template"] for z, d in w.deployments().items()} == templates_before
    applied = [path for method, path, _ in calls if method == "PATCH" and "/status" not in path]
    assert sorted(applied) == [
        "/apis/apps/v1/namespaces/retail/deployments/shoes-zone-a",
        "/apis/apps/v1/namespaces/retail/deployments/shoes-zone-b",
    ]
    assert w.status["desiredInferenceUnits"] == 5
    assert w.condition("Progressing")["reason"] == "ScalingUp"


async def test_stop_scales_to_zero_then_stopped(world: Any) -> None:
    w = world(minInferenceUnits=2)
    await w.reconcile()
    w.run_units()
    await w.reconcile()
    w.spec(state="Stopped")
    await w.reconcile()
    assert set(w.replicas().values()) == {0}
    assert w.status["status"] == "STOPPING"
    w.units = []
    await w.reconcile()
    assert w.status["status"] == "STOPPED"
    assert w.status["desiredInferenceUnits"] == 0


async def test_rebalance_moves_a_lost_zone_and_announces_it(world: Any) -> None:
    w = world(minInferenceUnits=3, zoneOutagePolicy="Rebalance")
    await w.reconcile()
    w.run_units()
    await w.reconcile()
    w.nodes["zone-c"] = False
    await w.reconcile()
    assert w.replicas() == {"zone-a": 2, "zone-b": 1, "zone-c": 0}
    assert ("Warning", "ZoneOutageRebalance") in [(t, r) for t, r, _ in w.events]
    w.nodes["zone-c"] = True
    await w.reconcile()
    assert w.replicas() == {"zone-a": 1, "zone-b": 1, "zone-c": 1}
    assert ("Normal", "ZonesRecovered") in [(t, r) for t, r, _ in w.events]


async def test_wait_keeps_the_lost_zone_share(world: Any) -> None:
    w = world(minInferenceUnits=3)
    await w.reconcile()
    w.run_units()
    await w.reconcile()
    w.nodes["zone-c"] = False
    w.units = [u for u in w.units if u.zone != "zone-c"]
    await w.reconcile()
    assert w.replicas() == {"zone-a": 1, "zone-b": 1, "zone-c": 1}
    assert w.status["status"] == "RUNNING"
    assert w.status["inServiceInferenceUnits"] == 2
    assert ("Warning", "ZoneOutageWait") in [(t, r) for t, r, _ in w.events]


async def test_an_invalid_spec_fails_with_the_field_named(world: Any) -> None:
    w = world(minInferenceUnits=1)
    w.body["spec"]["model"]["repository"] = "relative/path"
    calls = await w.reconcile()
    assert w.status["status"] == "FAILED"
    assert "spec.model.repository" in w.status["statusMessage"]
    degraded = w.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    warnings = [m for t, r, m in w.events if (t, r) == ("Warning", "InvalidSpec")]
    assert len(warnings) == 1
    assert "spec.model.repository" in warnings[0]
    assert not [path for _, path, _ in calls if "deployments" in path]
    # Again: no new Event, no write.
    assert await w.reconcile() == []


async def test_a_zone_that_does_not_exist_is_named_and_the_others_serve(world: Any) -> None:
    w = world(minInferenceUnits=2, zones=["zone-a", "zone-x"])
    await w.reconcile()
    assert w.replicas() == {"zone-a": 2}
    degraded = w.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert "spec.zones" in degraded["message"]
    assert "zone-x" in degraded["message"]
    # A spec that cannot be met as written: kstatus reads Failed.
    stalled = w.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert w.condition("Reconciling")["status"] == "False"


def _gpu_node(zone: str, gpus: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"gpu-{zone}", "labels": {workload.TOPOLOGY_ZONE_LABEL: zone}},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "allocatable": {"cpu": "8", "nvidia.com/gpu": gpus},
        },
    }


def _gpu_template(gpus: int) -> dict[str, Any]:
    template = copy.deepcopy(TEMPLATE)
    template["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    template["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    return template


async def test_zones_without_a_node_that_fits_are_skipped_and_named(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world(minInferenceUnits=4)
    monkeypatch.setattr(templates, "pod_template", lambda **_: _gpu_template(1))
    w.pool = [_gpu_node("zone-a", "2"), _gpu_node("zone-b", "2")]
    await w.reconcile()
    assert w.replicas() == {"zone-a": 2, "zone-b": 2}
    skipped = w.status["zones"]["zone-c"]
    assert skipped == {
        "desired": 0,
        "inService": 0,
        "skipped": "no node fits (1 node: allocatable nvidia.com/gpu 0 < 1)",
    }
    assert "zones skipped: zone-c: no node fits" in w.condition("Ready")["message"]
    assert "zones skipped: zone-c" in w.status["statusMessage"]
    assert [m for t, r, m in w.events if r == "ZonesSkipped"] == [
        "zones skipped: zone-c: no node fits (1 node: allocatable nvidia.com/gpu 0 < 1)"
    ]
    # A GPU node joins zone-c: the zone takes its share, and that is announced once.
    w.pool.append(_gpu_node("zone-c", "1"))
    await w.reconcile()
    assert w.replicas() == {"zone-a": 2, "zone-b": 1, "zone-c": 1}
    assert "zone-c" not in w.status["zones"] or "skipped" not in w.status["zones"]["zone-c"]
    assert [r for _, r, _ in w.events].count("ZonesFeasible") == 1


async def test_no_feasible_zone_fails_at_once_and_applies_nothing(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world(minInferenceUnits=2)
    monkeypatch.setattr(templates, "pod_template", lambda **_: _gpu_template(3))
    w.pool = [_gpu_node("zone-a", "2")]
    calls = await w.reconcile()
    assert w.status["status"] == "FAILED"
    assert not [path for _, path, _ in calls if "deployments" in path]
    stalled = w.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "NoFeasibleZone")
    assert stalled["message"].startswith("no zone can run a unit: zone-a: no node fits (")
    assert "allocatable nvidia.com/gpu 2 < 3" in stalled["message"]
    assert {(t, r) for t, r, _ in w.events} >= {
        ("Warning", "Failed"),
        ("Warning", "NoFeasibleZone"),
    }
    # Stopped, it needs no zone: STOPPED, not FAILED.
    w.spec(state="Stopped")
    w.body["metadata"]["generation"] = 2
    await w.reconcile()
    assert w.status["status"] == "STOPPED"
    assert w.condition("Stalled")["status"] == "False"


async def test_unit_hours_continue_from_the_status_after_a_restart(world: Any) -> None:
    w = world(minInferenceUnits=2)
    await w.reconcile()
    w.run_units()
    await w.reconcile()  # 2 units in service from NOW
    w.now += 1800
    await w.reconcile()
    assert w.status["inferenceUnitHours"] == pytest.approx(1.0)
    w.reconciler.memory.clear()  # a new operator process
    w.now += 1800
    await w.reconcile()
    assert w.status["inferenceUnitHours"] == pytest.approx(2.0)
    assert w.status["inferenceUnitSeconds"] == pytest.approx(7200.0)


async def test_a_restart_neither_scales_down_nor_applies_again(world: Any) -> None:
    w = world(minInferenceUnits=1, maxInferenceUnits=10)
    w.reconciler.demand = {("retail", "shoes"): 30.0}  # 30 TPS / (5 x 0.7) -> 9 units
    await w.reconcile()
    assert w.status["desiredInferenceUnits"] == 9
    w.run_units()
    await w.reconcile()
    w.reconciler.memory.clear()
    w.reconciler.demand = {("retail", "shoes"): 0.0}
    w.now += 5
    calls = await w.reconcile()
    # Only the status changes: the demand, and the scaling history it was folded into.
    assert [sorted(body["status"]) for _, _, body in calls] == [["demandTps", "scalingHistory"]]
    assert w.status["desiredInferenceUnits"] == 9  # not before the scale-down delay


async def test_a_restart_continues_the_scaling_history_from_the_status(world: Any) -> None:
    w = world(minInferenceUnits=1, maxInferenceUnits=10)
    w.reconciler.demand = {("retail", "shoes"): 12.0}
    for _ in range(12):  # one minute of 12 TPS, one sample every 5 s
        await w.reconcile()
        await w.reconciler.evaluate(("retail", "shoes"), now=w.now)
        await w.reconcile()
        w.now += 5
    stored = w.status["scalingHistory"]
    before = w.reconciler.memory[("retail", "shoes")].decision.history
    assert stored["stableSeconds"] == pytest.approx(before.stable.seconds)
    assert stored["stableCalls"] == pytest.approx(before.stable.calls)
    assert (stored["windowCalls"], stored["windowSeconds"]) == pytest.approx((60.0, 5.0))
    w.reconciler.memory.clear()  # a new operator process
    await w.reconcile()
    after = w.reconciler.memory[("retail", "shoes")].decision.history
    # The minute of evidence goes on, aged by the 5 s since and with one more sample,
    # instead of starting from that one sample.
    assert after.stable.seconds > before.stable.seconds
    assert after.recommendations[0][0] == pytest.approx(before.recommendations[0][0])
    scraped = generate_latest(
        metrics.Metrics(memory=lambda: w.reconciler.memory, clock=lambda: w.now).registry
    ).decode()
    assert (
        f'kiu_stable_demand_tps{{namespace="retail",projectversion="shoes"}} '
        f"{after.stable.tps!r}" in scraped
    )


async def test_a_crash_looping_unit_fails_a_start_after_the_timeout(world: Any) -> None:
    w = world(minInferenceUnits=1)
    await w.reconcile()
    w.units = [
        observations.Unit(
            name="shoes-zone-a-1",
            zone="zone-a",
            ready=False,
            terminating=False,
            created=w.now,
            unschedulable_since=None,
            failure=observations.Failure(reason="CrashLoopBackOff", message="model not found"),
        )
    ]
    await w.reconcile()
    assert w.status["status"] == "STARTING"
    assert w.condition("Degraded")["reason"] == "CrashLoopBackOff"
    w.now += 61
    await w.reconcile()
    assert w.status["status"] == "FAILED"
    assert "model not found" in w.status["statusMessage"]
    assert ("Warning", "Failed") in [(t, r) for t, r, _ in w.events]


async def test_objects_the_api_refuses_show_in_status_and_are_retried(world: Any) -> None:
    w = world(minInferenceUnits=1)
    w.refuse = True
    with pytest.raises(errors.Invalid):
        await w.reconcile()
    assert w.status["status"] == "STARTING"
    assert w.condition("Degraded")["reason"] == "ApplyFailed"
    assert "field not declared" in w.status["statusMessage"]
    assert ("Warning", "ApplyFailed") in [(t, r) for t, r, _ in w.events]
    w.refuse = False
    await w.reconcile()
    assert w.condition("Degraded")["status"] == "False"
    assert ("Normal", "Recovered") in [(t, r) for t, r, _ in w.events]
