"""End to end on the local cluster: the operator, real `kiu unit` pods, real faults.

Zone outages and an operator killed mid scale-up are scenarios under load on the
chart-installed system: tests/reliability/.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.fixtures import REPO, Cluster, wait_for
from tests.operator import harness
from tests.operator.harness import (
    Operator,
    condition,
    projectversion,
    replicas,
    status,
    units,
    wait_status,
)

pytestmark = pytest.mark.cluster

ALL_ZONES = {"zone-a": 1, "zone-b": 1, "zone-c": 1}


@pytest.fixture(scope="session")
def crd(kiu_cluster: Cluster) -> None:
    kiu_cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kiu_cluster.wait_established()


@pytest.fixture
def start_operator(cluster: Cluster, namespace: str, crd: None, tmp_path: Path) -> Iterator[Any]:
    """Start operators for the test's namespace; their logs are printed if the test fails."""
    started: list[Operator] = []

    def start(*args: str) -> Operator:
        operator = Operator(cluster, namespace, tmp_path, *args).start()
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()
        print(f"---- {operator.log_path.name}\n{operator.log()}")


@pytest.fixture
def operator(start_operator: Any) -> Operator:
    op: Operator = start_operator()
    return op


def _running(cluster: Cluster, namespace: str, name: str, count: int) -> dict[str, Any]:
    return wait_status(
        cluster,
        namespace,
        name,
        status="RUNNING",
        desiredInferenceUnits=count,
        inServiceInferenceUnits=count,
    )


def test_min_three_runs_one_unit_per_zone(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(projectversion("shapes", minInferenceUnits=3), namespace)
    current = _running(cluster, namespace, "shapes", 3)

    assert replicas(cluster, namespace, "shapes") == ALL_ZONES
    assert sorted(
        harness.pod_zone(cluster, pod) for pod in units(cluster, namespace, "shapes")
    ) == [
        "zone-a",
        "zone-b",
        "zone-c",
    ]
    assert current["zones"] == {z: {"desired": 1, "inService": 1} for z in ALL_ZONES}
    assert current["tpsLimit"] == 15
    assert re.fullmatch(
        rf"arn:kiu:rekognition:{namespace}:000000000000:project/shapes/version/shapes/\d+",
        current["arn"],
    )
    generation = harness.get(cluster, namespace, "shapes")["metadata"]["generation"]
    assert current["observedGeneration"] == generation
    for kind, expected in (("Ready", "True"), ("Progressing", "False"), ("Degraded", "False")):
        assert condition(current, kind)["status"] == expected
        assert condition(current, kind)["observedGeneration"] == generation
    # kstatus reads the same: observedGeneration current, Ready True.
    service = cluster.core().read_namespaced_service("shapes", namespace)
    assert service.spec.cluster_ip == "None"
    assert {p.name for p in service.spec.ports} >= {"http", "grpc"}
    budget = client.PolicyV1Api(cluster.api).read_namespaced_pod_disruption_budget(
        "shapes", namespace
    )
    assert budget.spec.max_unavailable == 1

    labels = f'namespace="{namespace}",projectversion="shapes"'
    text = operator.metrics()
    for line in (
        f"kiu_desired_inference_units{{{labels}}} 3.0",
        f"kiu_in_service_inference_units{{{labels}}} 3.0",
        f"kiu_min_inference_units{{{labels}}} 3.0",
    ):
        assert line in text
    assert f"kiu_inference_unit_seconds_total{{{labels}}}" in text
    assert f"kiu_reconcile_duration_seconds_count{{{labels}}}" in text


def test_kubectl_scale_resizes_without_restarting_a_unit(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(projectversion("shapes", minInferenceUnits=3), namespace)
    _running(cluster, namespace, "shapes", 3)
    before = {p.metadata.uid: harness.restarts(p) for p in units(cluster, namespace, "shapes")}

    cluster.kubectl("scale", "-n", namespace, "pjv/shapes", "--replicas=5")
    _running(cluster, namespace, "shapes", 5)

    assert replicas(cluster, namespace, "shapes") == {"zone-a": 2, "zone-b": 2, "zone-c": 1}
    after = {p.metadata.uid: harness.restarts(p) for p in units(cluster, namespace, "shapes")}
    assert len(after) == 5
    assert {uid: after.get(uid) for uid in before} == before, "a running unit was replaced"
    assert any(r == "ScaleUp" for _, r, _ in harness.events(cluster, namespace, "shapes"))


def test_stop_removes_every_unit_and_start_brings_them_back(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(projectversion("shapes", minInferenceUnits=2), namespace)
    _running(cluster, namespace, "shapes", 2)

    harness.patch_spec(cluster, namespace, "shapes", state="Stopped")
    wait_status(cluster, namespace, "shapes", status="STOPPED", inServiceInferenceUnits=0)
    assert harness.all_pods(cluster, namespace, "shapes") == []
    assert status(cluster, namespace, "shapes")["desiredInferenceUnits"] == 0

    harness.patch_spec(cluster, namespace, "shapes", state="Running")
    _running(cluster, namespace, "shapes", 2)


def test_a_killed_unit_is_replaced_in_its_zone_and_status_follows(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(projectversion("shapes", minInferenceUnits=3), namespace)
    _running(cluster, namespace, "shapes", 3)
    victim = next(
        p for p in units(cluster, namespace, "shapes") if harness.pod_zone(cluster, p) == "zone-b"
    )

    cluster.kill_pod_process(namespace, victim.metadata.name)
    lag = _status_lag(cluster, namespace, victim.metadata.name, in_service=2)
    assert lag < 2.0, f"status showed the unit out of service {lag:.1f} s after the pod"
    _running(cluster, namespace, "shapes", 3)

    cluster.core().delete_namespaced_pod(victim.metadata.name, namespace)
    wait_for(
        lambda: (
            len(units(cluster, namespace, "shapes")) == 3
            and victim.metadata.name
            not in {p.metadata.name for p in units(cluster, namespace, "shapes")}
        ),
        timeout=60,
        what="a replacement unit",
    )
    _running(cluster, namespace, "shapes", 3)
    zones = sorted(harness.pod_zone(cluster, p) for p in units(cluster, namespace, "shapes"))
    assert zones == ["zone-a", "zone-b", "zone-c"]


def _status_lag(cluster: Cluster, namespace: str, pod: str, *, in_service: int) -> float:
    """Seconds between the pod turning not ready and the status showing `in_service`."""
    pod_at = status_at = None
    deadline = time.monotonic() + 60
    while (pod_at is None or status_at is None) and time.monotonic() < deadline:
        now = time.monotonic()
        if pod_at is None:
            current = cluster.core().read_namespaced_pod(pod, namespace)
            ready = [c for c in current.status.conditions or [] if c.type == "Ready"]
            if ready and ready[0].status != "True":
                pod_at = now
        if (
            status_at is None
            and status(cluster, namespace, "shapes").get("inServiceInferenceUnits") == in_service
        ):
            status_at = now
        time.sleep(0.05)
    assert pod_at is not None, "the unit never went out of service"
    assert status_at is not None, "the status never showed the unit out of service"
    return max(status_at - pod_at, 0.0)


class FakeGateway:
    """A pod labelled as a gateway serving the gateway's demand counter from a file the
    test rewrites, so the operator finds it by label selector and scrapes its pod IP."""

    def __init__(self, cluster: Cluster, namespace: str, directory: Path) -> None:
        self.namespace = namespace
        self.path = directory / "metrics"
        self.value = 0.0
        self.rate = 0.0
        self._stop = threading.Event()
        self._write()
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "gateway",
                    "labels": {
                        "app.kubernetes.io/name": "kiu",
                        "app.kubernetes.io/component": "gateway",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "gateway",
                            "image": "python:3.11-slim",
                            "command": [
                                "python3",
                                "-m",
                                "http.server",
                                "9090",
                                "--directory",
                                str(directory),
                            ],
                            # /metrics on the gateway's internal port, as the real one.
                            "ports": [{"name": "internal", "containerPort": 9090}],
                            "readinessProbe": {
                                "httpGet": {"path": "/metrics", "port": 9090},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
            namespace,
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        text = (
            "# TYPE kiu_gateway_demand_total counter\n"
            f'kiu_gateway_demand_total{{namespace="{self.namespace}",projectversion="shapes"}} '
            f"{self.value}\n"
        )
        self.path.with_suffix(".tmp").write_text(text)
        self.path.with_suffix(".tmp").replace(self.path)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.1):
            now = time.monotonic()
            self.value += self.rate * (now - last)
            last = now
            self._write()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_demand_scales_up_and_down_after_the_delay(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    directory = tmp_path / "gateway"
    directory.mkdir()
    gateway = FakeGateway(cluster, namespace, directory)
    try:
        wait_for(
            lambda: cluster.core().read_namespaced_pod("gateway", namespace).status.pod_ip,
            timeout=60,
            what="the gateway pod IP",
        )
        cluster.apply(
            projectversion(
                "shapes",
                minInferenceUnits=1,
                maxInferenceUnits=3,
                # A short stable window, so that a few calls per second are measured
                # within seconds (how fast is the autoscaler benchmark's to report).
                autoscaling={"scaleDownDelaySeconds": 15, "stableWindowSeconds": 5},
            ),
            namespace,
        )
        _running(cluster, namespace, "shapes", 1)
        wait_status(cluster, namespace, "shapes", demandTps=0)

        # 9 TPS at 70% of 5 TPS per unit needs 3 units.
        gateway.rate = 9.0
        wait_status(cluster, namespace, "shapes", desiredInferenceUnits=3, timeout=60)
        reason = harness.wait_event(cluster, namespace, "shapes", "ScaleUp")[2]
        assert "demand" in reason
        _running(cluster, namespace, "shapes", 3)

        gateway.rate = 0.0
        quiet = time.monotonic()
        time.sleep(10)
        assert status(cluster, namespace, "shapes")["desiredInferenceUnits"] == 3
        wait_status(cluster, namespace, "shapes", desiredInferenceUnits=1, timeout=60)
        # The delay runs from the last evaluation that still wanted 3 units, which can
        # come up to one period before the demand stopped.
        assert time.monotonic() - quiet >= 15.0 - harness.EVALUATION_PERIOD
        harness.wait_event(cluster, namespace, "shapes", "ScaleDown")
    finally:
        gateway.stop()


def test_a_standby_takes_over_and_unit_hours_continue(
    cluster: Cluster, namespace: str, start_operator: Any
) -> None:
    one = start_operator("--billing-period", "2")
    two = start_operator("--billing-period", "2")
    leader: Operator = wait_for(
        lambda: next((op for op in (one, two) if op.leading()), None), timeout=30, what="a leader"
    )
    standby = two if leader is one else one
    assert not standby.leading()

    cluster.apply(projectversion("shapes", minInferenceUnits=2), namespace)
    _running(cluster, namespace, "shapes", 2)
    in_service_since = time.time()
    pods_before = {p.metadata.uid for p in units(cluster, namespace, "shapes")}

    leader.kill()
    wait_for(standby.leading, timeout=40, what="the standby to take over")
    harness.patch_spec(cluster, namespace, "shapes", minInferenceUnits=3)
    _running(cluster, namespace, "shapes", 3)
    assert pods_before <= {p.metadata.uid for p in units(cluster, namespace, "shapes")}

    # Billed across the failover: 2 units all along (3 lately), less at most one billing
    # period of lag. A gap while no replica led would fall short by 2 x the gap.
    time.sleep(3)
    billed = status(cluster, namespace, "shapes")["inferenceUnitHours"] * 3600
    elapsed = time.time() - in_service_since
    assert 2 * elapsed - 2 * 3 <= billed <= 3 * elapsed + 5, (billed, elapsed)


def test_fifty_projectversions_reconcile_without_errors(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # Stopped, so the test measures the operator and not 50 model servers on 2 cores.
    cluster.apply([projectversion(f"model-{n:02d}", state="Stopped") for n in range(50)], namespace)
    wait_for(
        lambda: (
            sum(
                (item.get("status") or {}).get("status") == "STOPPED"
                for item in cluster.custom()
                .list_namespaced_custom_object(
                    harness.GROUP, harness.VERSION, namespace, harness.PLURAL
                )
                .get("items", [])
            )
            == 50
        ),
        timeout=180,
        what="50 STOPPED ProjectVersions",
    )
    assert len(cluster.apps().list_namespaced_deployment(namespace).items) == 150
    assert len(cluster.core().list_namespaced_service(namespace).items) == 50
    text = operator.metrics()
    assert "kiu_reconcile_errors_total{" not in text
    assert "Traceback" not in operator.log()


def test_bad_resources_are_reported_and_the_others_served(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(
        [
            projectversion("good", minInferenceUnits=1),
            projectversion("nowhere", minInferenceUnits=1, zones=["zone-x"]),
            projectversion("partly", minInferenceUnits=2, zones=["zone-a", "zone-y"]),
            projectversion(
                "gpu",
                inferenceUnit={"runtime": "cpu", "resources": {"limits": {"nvidia.com/gpu": 1}}},
            ),
        ],
        namespace,
    )
    _running(cluster, namespace, "good", 1)

    nowhere = wait_status(cluster, namespace, "nowhere", status="FAILED")
    assert "spec.zones" in nowhere["statusMessage"]
    assert condition(nowhere, "Degraded")["reason"] == "InvalidSpec"
    event = harness.wait_event(cluster, namespace, "nowhere", "InvalidSpec")
    assert event[0] == "Warning"
    assert "spec.zones" in event[2]
    assert "zone-x" in event[2]
    assert harness.all_pods(cluster, namespace, "nowhere") == []

    gpu = wait_status(cluster, namespace, "gpu", status="FAILED")
    assert condition(gpu, "Degraded")["reason"] == "InvalidSpec"
    event = harness.wait_event(cluster, namespace, "gpu", "InvalidSpec")
    assert "spec.inferenceUnit" in event[2]
    assert "the cpu runtime uses no GPU" in event[2]
    assert harness.all_pods(cluster, namespace, "gpu") == []

    partly = _running(cluster, namespace, "partly", 2)
    assert replicas(cluster, namespace, "partly") == {"zone-a": 2}
    assert condition(partly, "Degraded")["status"] == "True"
    assert "zone-y" in condition(partly, "Degraded")["message"]
    assert operator.healthy()


def test_a_model_that_cannot_load_fails_with_the_cause(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # The repository exists but holds no such model: every unit exits at start-up.
    missing = {"name": "no-such-model", "repository": harness.BUNDLED, "task": "Classification"}
    cluster.apply(projectversion("broken", minInferenceUnits=1, model=missing), namespace)

    starting = wait_for(
        lambda: (
            current
            if condition(current := status(cluster, namespace, "broken"), "Degraded")["status"]
            == "True"
            else None
        ),
        timeout=120,
        what="Degraded=True while starting",
    )
    assert starting["status"] == "STARTING"
    # the loader's own words, from the unit's last log line (the termination message)
    assert (
        "cannot load model 'no-such-model': no model 'no-such-model'"
        in (condition(starting, "Degraded")["message"])
    )
    # --failure-timeout is 20 s in these tests.
    failed = wait_status(cluster, namespace, "broken", status="FAILED", timeout=120)
    reason = condition(failed, "Degraded")["reason"]
    assert reason in {"CrashLoopBackOff", "RunContainerError", "Error"}
    assert "broken-zone-" in failed["statusMessage"]
    assert reason in failed["statusMessage"]
    harness.wait_event(cluster, namespace, "broken", "Failed")
    assert operator.healthy()


def test_a_broken_contract_is_reported_with_the_loaders_message(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # A user's repository whose contract names a colour order kiu does not know. Pods are
    # host processes with an emptyDir over /tmp, so the repository lives in the checkout.
    repository = REPO / ".kiu" / "repositories" / namespace
    for step in ("", "-preprocess", "-onnx", "-postprocess"):
        shutil.copytree(harness.MODELS / f"shapes-classifier{step}", repository / f"mine{step}")
        config = repository / f"mine{step}" / "config.pbtxt"
        config.write_text(config.read_text().replace("shapes-classifier", "mine"))
    contract = repository / "mine-preprocess" / "1" / "contract.json"
    contract.write_text(contract.read_text().replace('"RGB"', '"CMYK"'))
    try:
        mine = {"name": "mine", "repository": str(repository), "task": "Classification"}
        cluster.apply(projectversion("mine", minInferenceUnits=1, model=mine), namespace)
        degraded = wait_for(
            lambda: (
                current
                if "CMYK"
                in condition(current := status(cluster, namespace, "mine"), "Degraded").get(
                    "message", ""
                )
                else None
            ),
            timeout=120,
            what="Degraded with the loader's message",
        )
        message = condition(degraded, "Degraded")["message"]
        assert "contract.json: colour must be one of RGB, BGR, not 'CMYK'" in message
        assert condition(degraded, "Degraded")["status"] == "True"
        reason = condition(degraded, "Degraded")["reason"]
        kind, _, text = harness.wait_event(cluster, namespace, "mine", reason)
        assert kind == "Warning"
        assert "colour must be one of RGB, BGR" in text
    finally:
        shutil.rmtree(repository)
