"""Fault scenarios under load on the chart-installed system (docs/reliability.md).

Each scenario drives an open-loop boto3 load through a stand-in for the gateway
Service, injects one fault, waits for kiu to recover, and writes its figures
(requests sent, succeeded, throttled, failed, recovery times) to
``.kiu/reliability/``. Pass: no request within capacity fails, none is left
without an answer, and the scenario's own promise holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from tests.cluster.fixtures import Cluster, wait_for
from tests.operator import harness

from .conftest import TPS, UNITS, WITHIN, Model, System
from .traffic import Figures, Traffic

pytestmark = [pytest.mark.cluster, pytest.mark.reliability]

ALL_ZONES = {"zone-a": 1, "zone-b": 1, "zone-c": 1}
T = TypeVar("T")


def timed(predicate: Callable[[], T], *, timeout: float, what: str) -> tuple[T, float]:
    """wait_for, and the seconds it took."""
    started = time.monotonic()
    value = wait_for(predicate, timeout=timeout, interval=0.25, what=what)
    return value, time.monotonic() - started


def assert_nothing_failed(figures: Figures, phase: str | None = None) -> None:
    tally = figures.tally(phase)
    assert tally["lost"] == 0, tally
    assert tally["server_errors"] == 0, tally
    assert tally["failed"] == 0, tally
    assert tally["sent"] == tally["succeeded"] + tally["throttled"] + tally["failed"], tally


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_a_killed_unit_is_replaced_in_its_zone_and_capacity_returns(
    model: Model, cluster: Cluster
) -> None:
    figures = Figures(
        "unit-killed",
        "One unit's process killed (SIGKILL)",
        "no call fails or goes unanswered; the unit comes back in its own zone; "
        "three units in service again",
    )
    figures.rate = {"all": WITHIN}
    victim = next(p for p in model.units() if harness.pod_zone(cluster, p) == "zone-b")
    with model.traffic() as traffic:
        time.sleep(5)
        traffic.phase = "fault"
        cluster.kill_pod_process(model.system.namespace, victim.metadata.name)
        _, figures.recovery["out_of_service"] = timed(
            lambda: model.status()["inServiceInferenceUnits"] == UNITS - 1,
            timeout=30,
            what="the status to count the unit out",
        )
        _, back = timed(
            lambda: model.ready_zones() == ["zone-a", "zone-b", "zone-c"],
            timeout=120,
            what="the unit back in zone-b",
        )
        model.running()
        figures.recovery["capacity_back"] = figures.recovery["out_of_service"] + back
        traffic.phase = "after"
        time.sleep(5)
    figures.take(traffic)
    figures.write()

    assert_nothing_failed(figures)
    assert model.replicas() == ALL_ZONES
    current = cluster.core().read_namespaced_pod(victim.metadata.name, model.system.namespace)
    assert current.status.container_statuses[0].restart_count >= 1
    assert harness.pod_zone(cluster, current) == "zone-b"
    assert figures.tally("after")["succeeded"] == figures.tally("after")["sent"]


def _outage_zone(system: System, cluster: Cluster) -> str:
    """A zone without a gateway replica, so the load keeps its way in (the scenario is
    about the units; a gateway's own failure is another scenario)."""
    taken = {harness.pod_zone(cluster, p) for p in system.release.pods("gateway")}
    return next(z for z in ("zone-c", "zone-b", "zone-a") if z not in taken)


@pytest.mark.parametrize("policy", ["Wait", "Rebalance"])
def test_zone_outage_serves_the_remaining_capacity_and_recovers(
    model: Model, cluster: Cluster, policy: str
) -> None:
    namespace = model.system.namespace
    harness.patch_spec(cluster, namespace, model.name, zoneOutagePolicy=policy)
    zone = _outage_zone(model.system, cluster)
    above = (UNITS - 1) * TPS * 1.4
    figures = Figures(
        f"zone-outage-{policy.lower()}",
        f"Zone outage under {policy}, then repair",
        "calls up to the remaining units' TPS succeed, the rest are throttled, none fails "
        "or goes unanswered; "
        + (
            "the zone's Deployment keeps its replica (Wait), Degraded=True"
            if policy == "Wait"
            else "the zone's unit moves to a healthy zone and back after the repair"
        ),
    )
    figures.rate = {"before": WITHIN, "outage": above, "after repair": WITHIN}
    figures.notes["zone"] = zone
    with model.traffic() as traffic:
        time.sleep(5)
        traffic.phase, traffic.rate = "outage", above
        cluster.zone_outage(zone)
        _, figures.recovery["detected"] = timed(
            lambda: model.status()["inServiceInferenceUnits"] == UNITS - 1,
            timeout=90,
            what="the outage to take a unit out of service",
        )
        traffic.phase = "degraded"
        degraded_from = traffic.now()
        if policy == "Wait":
            time.sleep(15)
            assert model.status()["status"] == "RUNNING"
            assert model.replicas() == ALL_ZONES
            harness.wait_event(cluster, namespace, model.name, "ZoneOutageWait")
            wait_for(
                lambda: harness.condition(model.status(), "Degraded")["status"] == "True",
                timeout=30,
                what="Degraded=True",
            )
        else:
            expected = {z: 1 for z in ALL_ZONES if z != zone}
            expected[min(expected)] = 2
            wait_for(
                lambda: model.replicas() == {**expected, zone: 0},
                timeout=60,
                what=f"{zone}'s unit moved",
            )
            harness.wait_event(cluster, namespace, model.name, "ZoneOutageRebalance")
            _, moved = timed(
                lambda: model.status()["inServiceInferenceUnits"] == UNITS,
                timeout=120,
                what="three units in service in the healthy zones",
            )
            figures.recovery["rebalanced"] = figures.recovery["detected"] + moved
        degraded_for = traffic.now() - degraded_from
        traffic.phase, traffic.rate = "after repair", WITHIN
        repaired = time.monotonic()
        cluster.zone_repair(zone)
        wait_for(lambda: model.replicas() == ALL_ZONES, timeout=60, what="the even spread back")
        model.running()
        wait_for(
            lambda: model.ready_zones() == ["zone-a", "zone-b", "zone-c"],
            timeout=120,
            what="a ready unit in every zone",
        )
        figures.recovery["repair_to_spread_back"] = time.monotonic() - repaired
        time.sleep(3)
    figures.take(traffic)
    figures.notes["degraded_seconds"] = round(degraded_for, 1)
    figures.write()

    assert_nothing_failed(figures)
    if policy == "Rebalance":
        harness.wait_event(cluster, namespace, model.name, "ZonesRecovered")
    else:
        # Limited to the remaining units: most of what they allow succeeds, the rest
        # is throttled.
        degraded = figures.tally("degraded")
        remaining = (UNITS - 1) * TPS * degraded_for
        assert degraded["throttled"] > 0, degraded
        assert 0.7 * remaining <= degraded["succeeded"] <= 1.2 * remaining + 2 * TPS, (
            degraded,
            remaining,
        )


def test_the_active_operator_killed_mid_scale_up(model: Model, cluster: Cluster) -> None:
    namespace = model.system.namespace
    release = model.system.release
    figures = Figures(
        "operator-killed",
        "Leading operator SIGKILLed mid scale-up (3 to 5 units), its pod gone with it",
        "no call fails; the standby takes the Lease and finishes the scale-up; one "
        "Deployment per zone, no running unit replaced; unit-hours billed without a gap",
    )
    figures.rate = {"all": WITHIN}
    before = {p.metadata.uid: harness.restarts(p) for p in model.units()}
    billed_from = model.status()["inferenceUnitHours"] * 3600
    started = time.monotonic()
    leader = wait_for(release.lease_holder, timeout=30, what="the leader")
    with model.traffic() as traffic:
        time.sleep(3)
        traffic.phase = "fault"
        harness.patch_spec(cluster, namespace, model.name, minInferenceUnits=5)
        wait_for(
            lambda: sum(model.replicas().values()) > UNITS,
            timeout=30,
            interval=0.05,
            what="the scale-up to begin",
        )
        killed = time.monotonic()
        cluster.kill_pod_process(namespace, leader)
        # As when the node is lost: the kubelet does not restart the process in place
        # (a restarted process would reclaim its own Lease at once, see the docs).
        cluster.kubectl("delete", "pod", leader, "-n", namespace, "--grace-period=0", "--force")
        # The standby takes over, or the Deployment's replacement for the killed pod
        # when it starts first: either is a live replica other than the killed one.
        _, figures.recovery["standby_leads"] = timed(
            lambda: (
                release.lease_holder()
                in {p.metadata.name for p in release.pods("operator")} - {leader}
            ),
            timeout=60,
            what="another operator replica to take the Lease",
        )
        model.running(5)
        figures.recovery["scaled_up"] = time.monotonic() - killed
        traffic.phase = "after"
        time.sleep(4)
    figures.take(traffic)

    assert_nothing_failed(figures)
    assert model.replicas() == {"zone-a": 2, "zone-b": 2, "zone-c": 1}
    deployments = cluster.apps().list_namespaced_deployment(
        namespace, label_selector=f"kiu.dev/projectversion={model.name}"
    )
    assert sorted(d.metadata.name for d in deployments.items) == sorted(
        f"{model.name}-{zone}" for zone in ALL_ZONES
    )
    after = {p.metadata.uid: harness.restarts(p) for p in model.units()}
    assert len(after) == 5
    assert {uid: after.get(uid) for uid in before} == before
    # Billed across the failover: at least 3 units all along, at most 5; the billing
    # period (2 s) lags. A gap while no replica led would fall short by 3 x the gap.
    time.sleep(3)
    billed = model.status()["inferenceUnitHours"] * 3600 - billed_from
    elapsed = time.monotonic() - started
    figures.notes["unit_seconds_billed"] = round(billed, 1)
    figures.notes["seconds_elapsed"] = round(elapsed, 1)
    figures.write()
    assert 3 * elapsed - 3 * 4 <= billed <= 5 * elapsed + 5, (billed, elapsed)
    # The chart's Deployment brings the operator back to two replicas.
    wait_for(lambda: len(release.pods("operator")) == 2, timeout=60, what="two operators again")


@pytest.mark.parametrize("signal", ["TERM", "KILL"])
def test_a_gateway_replica_killed(model: Model, cluster: Cluster, signal: str) -> None:
    namespace = model.system.namespace
    balancer = model.system.balancer
    figures = Figures(
        f"gateway-{signal.lower()}",
        f"A gateway replica killed with SIG{signal}",
        "with botocore's standard retry mode (3 attempts) every call succeeds and none "
        "goes unanswered; the replica comes back into the Service's endpoints",
    )
    figures.rate = {"all": WITHIN}
    victim = model.system.release.pods("gateway")[0]
    address = f"{victim.status.pod_ip}:8080"
    with model.traffic(attempts=3) as traffic:
        time.sleep(5)
        traffic.phase = "fault"
        cluster.kill_pod_process(namespace, victim.metadata.name, signal=signal)
        _, figures.recovery["out_of_rotation"] = timed(
            lambda: address not in balancer.backends,
            timeout=30,
            what="the replica out of the Service's endpoints",
        )
        _, back = timed(
            lambda: address in balancer.backends,
            timeout=90,
            what="the replica back in the Service's endpoints",
        )
        figures.recovery["back_in_rotation"] = figures.recovery["out_of_rotation"] + back
        traffic.phase = "after"
        time.sleep(5)
    figures.take(traffic)
    figures.write()

    tally = figures.tally()
    assert tally["lost"] == 0, tally
    assert tally["succeeded"] == tally["sent"], tally
    assert len(balancer.backends) == 2


def test_a_gateway_replica_killed_under_a_one_sided_split(model: Model, cluster: Cluster) -> None:
    """Every call reaches one replica (one keep-alive client's lot) at twice the limit;
    the other replica is killed: the survivor keeps admitting the whole limit."""
    release = model.system.release
    limit = float(UNITS * TPS)
    figures = Figures(
        "gateway-killed-one-sided",
        "A gateway replica SIGKILLed while every call goes to the other, at twice the limit",
        "no call fails or goes unanswered (beyond throttling); the survivor finds its peer "
        "gone (refusing connections) and takes its share, and it admits the limit within 10 %",
    )
    figures.rate = {"all": 2 * limit}
    survivor, victim = release.gateway_addresses()
    host, survivor_host = victim.rsplit(":", 1)[0], survivor.rsplit(":", 1)[0]
    pod = next(p for p in release.pods("gateway") if p.status.pod_ip == host)
    before = release.peer_found_gone(survivor_host, host)

    traffic = Traffic(
        release,
        endpoint_url=f"http://{survivor}",
        arn=model.arn,
        image=model.image,
        rate=2 * limit,
    )
    with traffic:
        time.sleep(5)
        traffic.phase = "fault"
        cluster.kill_pod_process(model.system.namespace, pod.metadata.name, signal="KILL")
        # The kubelet restarts the killed replica at once, and once it is heard again the
        # two share the limit by demand (all of it at the survivor): what is timed is the
        # survivor finding its peer gone, which its log keeps.
        _, figures.recovery["share_taken_over"] = timed(
            lambda: release.peer_found_gone(survivor_host, host) > before,
            timeout=30,
            what="the survivor to find its peer gone and take its share",
        )
        traffic.phase = "after"
        after = traffic.now()
        time.sleep(8)
        ended = traffic.now()
    figures.take(traffic)
    tally = figures.tally("after")
    admitted = sum(1 for c in figures.calls if c.phase == "after" and c.outcome == "ok")
    figures.notes["admitted_per_s_after"] = round(admitted / (ended - after), 2)
    figures.notes["limit_tps"] = limit
    figures.write()
    assert_nothing_failed(figures)
    assert abs(admitted / (ended - after) - limit) <= 0.1 * limit, tally
    wait_for(
        lambda: len(model.system.balancer.backends) == 2,
        timeout=90,
        what="the killed replica back in the Service's endpoints",
    )


def test_the_api_server_restarted_while_traffic_flows(model: Model, cluster: Cluster) -> None:
    figures = Figures(
        "apiserver-restart",
        "kube-apiserver stopped for 20 s and started again",
        "no call fails while the API server is away (the gateways serve from their "
        "cached view); afterwards the operator reconciles a spec change",
    )
    figures.rate = {"all": WITHIN}
    with model.traffic() as traffic:
        time.sleep(5)
        traffic.phase = "apiserver down"
        cluster.stop_component("kube-apiserver")
        try:
            time.sleep(20)
        finally:
            traffic.phase = "after"
            started = time.monotonic()
            cluster.start_component("kube-apiserver")
        figures.recovery["apiserver_ready"] = time.monotonic() - started
        # The operator resumes: a spec change made now is reconciled.
        harness.patch_spec(
            cluster,
            model.system.namespace,
            model.name,
            inferenceUnit={"runtime": "cpu", "tps": TPS + 1},
        )
        _, figures.recovery["spec_change_reconciled"] = timed(
            lambda: model.status().get("tpsLimit") == UNITS * (TPS + 1),
            timeout=120,
            what="the new TPS limit in status",
        )
        figures.recovery["spec_change_reconciled"] += figures.recovery["apiserver_ready"]
        time.sleep(3)
    figures.take(traffic)
    figures.write()

    assert_nothing_failed(figures)
    assert figures.tally("apiserver down")["succeeded"] >= 0.9 * WITHIN * 20
    model.running()


def test_a_hanging_unit_is_routed_around_and_comes_back(model: Model, cluster: Cluster) -> None:
    namespace = model.system.namespace
    figures = Figures(
        "unit-hangs",
        "One unit frozen (SIGSTOP) until its probe marks it unready, then resumed",
        "no call fails (the call waits half its deadline on the frozen unit, then is "
        "retried on another); the unit turns unready; after SIGCONT it serves again",
    )
    figures.rate = {"all": WITHIN}
    # Gateways prefer units of their own zone: freeze one that a gateway sends to.
    gateway_zones = {harness.pod_zone(cluster, p) for p in model.system.release.pods("gateway")}
    victim = next(p for p in model.units() if harness.pod_zone(cluster, p) in gateway_zones)
    name = victim.metadata.name
    with model.traffic() as traffic:
        time.sleep(5)
        traffic.phase = "frozen"
        cluster.kill_pod_process(namespace, name, signal="STOP")
        try:
            _, figures.recovery["marked_unready"] = timed(
                lambda: not is_ready(cluster.core().read_namespaced_pod(name, namespace)),
                timeout=60,
                what="the readiness probe to mark the unit unready",
            )
            time.sleep(3)
        finally:
            cluster.kill_pod_process(namespace, name, signal="CONT")
        traffic.phase = "resumed"
        _, figures.recovery["ready_again"] = timed(
            lambda: is_ready(cluster.core().read_namespaced_pod(name, namespace)),
            timeout=90,
            what="the unit ready again",
        )
        model.running()
        time.sleep(5)
    figures.take(traffic)
    slow = [c for c in figures.calls if c.latency > 2.0]
    figures.notes["calls_slower_than_2s"] = len(slow)
    figures.notes["slowest_s"] = round(max(c.latency for c in figures.calls), 1)
    figures.write()

    assert_nothing_failed(figures)
    assert slow, "no call waited on the frozen unit"
    assert all(c.latency < 30 for c in figures.calls)
    pod = cluster.core().read_namespaced_pod(name, namespace)
    assert pod.status.container_statuses[0].restart_count == 0
