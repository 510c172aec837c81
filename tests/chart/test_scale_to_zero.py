"""End to end, with the chart installed: a model idle at zero units, woken by its first calls.

The gateway holds calls to a model with no ready unit (4 per replica here), annotates the
ProjectVersion so the operator starts a unit at once, and sends the held calls when the
unit is ready; calls beyond the queue are refused with a retry hint. Clients make one
attempt each (no botocore retry), so every answer is the gateway's own.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from kiu.imaging import scenes
from tests.chart import chart
from tests.chart.chart import Release
from tests.cluster.fixtures import Cluster, wait_for
from tests.operator import harness

pytestmark = pytest.mark.cluster

NAME = "sleepy"
QUEUE = 4
IDLE_SECONDS = 10
ACTIVATION = "kiu.dev/activation-requested-at"
IMAGE = next(scenes.scenes("classification", seed=5, count=1)).image


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[Release]:
    # billingPeriod 2: were units still billed at zero, the ledger would move within seconds.
    with chart.installed(
        cluster, namespace, f"gateway.holdQueueSize={QUEUE}", "operator.billingPeriod=2"
    ) as installed:
        yield installed


def create(cluster: Cluster, namespace: str, *, min_units: int) -> None:
    body = harness.projectversion(
        NAME,
        minInferenceUnits=min_units,
        maxInferenceUnits=2,
        autoscaling={"scaleToZeroAfterSeconds": IDLE_SECONDS},
    )
    cluster.apply(body, namespace)


def at_zero(release: Release) -> dict[str, Any]:
    """Wait for zero units desired and in service, and no unit pod left."""

    def zero() -> dict[str, Any] | None:
        s = release.status(NAME)
        done = (
            s.get("desiredInferenceUnits") == 0
            and s.get("inServiceInferenceUnits") == 0
            and not harness.all_pods(release.cluster, release.namespace, NAME)
        )
        return s if done else None

    return wait_for(zero, timeout=180, interval=0.5, what=f"{NAME} at zero units")


def burst(release: Release, arn: str, gateways: list[str]) -> list[dict[str, Any] | ClientError]:
    """One DetectCustomLabels per entry of `gateways` (host:port), all at once."""
    clients = [release.rekognition(f"http://{g}") for g in gateways]

    def call(client: Any) -> dict[str, Any] | ClientError:
        try:
            return dict(client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": IMAGE}))
        except ClientError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return list(pool.map(call, clients))


def internal(address: str) -> str:
    """The internal port (/metrics) of the gateway replica at API address host:8080."""
    return f"{address.rsplit(':', 1)[0]}:9090"


def samples(url: str, name: str) -> float:
    """The sum of a metric's samples on a /metrics page."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("outcome", "success") == "success"
    )


def served(release: Release) -> float:
    """Inferences the model's unit pods answered, from their own metrics."""
    pods = harness.units(release.cluster, release.namespace, NAME)
    # A unit the burst's demand added may still be starting (no metrics port yet): it
    # has answered nothing, so only Ready units are asked.
    return sum(
        samples(f"http://{p.status.pod_ip}:8002/metrics", "kiu_unit_requests_total")
        for p in pods
        if p.status.pod_ip
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    )


def test_an_idle_model_scales_to_zero_and_a_burst_wakes_it(
    release: Release, cluster: Cluster, namespace: str
) -> None:
    create(cluster, namespace, min_units=1)
    running = harness.wait_status(
        cluster, namespace, NAME, status="RUNNING", inServiceInferenceUnits=1
    )
    arn = running["arn"]
    harness.patch_spec(cluster, namespace, NAME, minInferenceUnits=0)

    # Idle -> zero: RUNNING, nothing in service, Ready says it is idle, no more billing.
    idle = at_zero(release)
    assert idle["status"] == "RUNNING"
    generation = harness.get(cluster, namespace, NAME)["metadata"]["generation"]
    ready = {c["type"]: c for c in idle["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "ScaledToZero")
    assert ready["message"].startswith("idle: no demand for")
    assert ready["observedGeneration"] == generation
    assert ready["lastTransitionTime"]
    billed = idle["inferenceUnitSeconds"]
    assert billed > 0  # the unit that ran was billed
    time.sleep(8)  # four billing periods
    later = release.status(NAME)
    assert later["inferenceUnitSeconds"] == billed
    assert later["desiredInferenceUnits"] == 0

    # A burst, QUEUE calls to each gateway replica: all held, all answered once the unit is up.
    gateways = release.gateway_addresses()
    assert len(gateways) == 2
    started = time.monotonic()
    answers = burst(release, arn, [g for g in gateways for _ in range(QUEUE)])
    cold = time.monotonic() - started
    errors = [a for a in answers if isinstance(a, ClientError)]
    assert errors == [], [e.response["Error"] for e in errors]
    assert all(a["CustomLabels"] for a in answers if isinstance(a, dict))
    print(f"cold start: {len(answers)} held calls answered within {cold:.1f} s")
    assert served(release) == len(answers)  # each held call reached a unit exactly once
    annotations = harness.get(cluster, namespace, NAME)["metadata"]["annotations"]
    assert ACTIVATION in annotations
    activations = [
        samples(f"http://{internal(g)}/metrics", "kiu_gateway_activations_total") for g in gateways
    ]
    assert all(n >= 1 for n in activations), activations
    assert release.status(NAME)["status"] == "RUNNING"

    # Back at zero, a burst twice the queue at one replica: the excess is refused cleanly.
    at_zero(release)
    answers = burst(release, arn, [gateways[0]] * (2 * QUEUE))
    errors = [a for a in answers if isinstance(a, ClientError)]
    assert len(errors) == QUEUE
    for error in errors:
        assert error.response["Error"]["Code"] == "ResourceNotReadyException"
        assert "retry in" in error.response["Error"]["Message"]
        assert int(error.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) > 0
    assert all(a["CustomLabels"] for a in answers if isinstance(a, dict))
    rejected = samples(
        f"http://{internal(gateways[0])}/metrics", "kiu_gateway_hold_rejections_total"
    )
    assert rejected == QUEUE


def test_an_operator_restarted_at_zero_keeps_the_model_there_and_wakes_it(
    release: Release, cluster: Cluster, namespace: str
) -> None:
    create(cluster, namespace, min_units=0)  # a new model with min 0 and no demand: at zero
    arn = harness.wait_status(cluster, namespace, NAME, status="RUNNING")["arn"]
    at_zero(release)
    leader = wait_for(release.lease_holder, timeout=60, what="an operator to hold the Lease")
    for pod in release.pods("operator"):
        cluster.core().delete_namespaced_pod(pod.metadata.name, namespace)
    wait_for(
        lambda: (
            (h := release.lease_holder()) not in {None, leader}
            and h in {p.metadata.name for p in release.pods("operator")}
        ),
        timeout=120,
        what="a new operator to lead",
    )
    # The new leader evaluates (every 2 s) and keeps the idle model at zero.
    time.sleep(IDLE_SECONDS)
    status = release.status(NAME)
    assert (status["status"], status["desiredInferenceUnits"]) == ("RUNNING", 0)
    assert harness.all_pods(cluster, namespace, NAME) == []

    (answer,) = burst(release, arn, release.gateway_addresses()[:1])
    assert not isinstance(answer, ClientError), answer.response["Error"]
    assert answer["CustomLabels"]
    assert release.status(NAME)["status"] == "RUNNING"
