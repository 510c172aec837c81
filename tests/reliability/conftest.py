"""One chart-installed kiu for the fault scenarios of this folder, a model per scenario."""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kiu.imaging import scenes
from tests.chart import chart
from tests.chart.chart import Release
from tests.cluster.fixtures import Cluster, wait_for
from tests.operator import harness

from . import traffic
from .traffic import Balancer, Traffic

#: Calls per second well within three units' capacity (3 x 5 TPS).
WITHIN = 8.0
UNITS = 3
TPS = 5


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report.outcome
    return report


_OUTCOME = pytest.StashKey[str]()


@pytest.fixture(autouse=True)
def outcome_in_figures(request: pytest.FixtureRequest) -> Iterator[None]:
    """Add the test's outcome (passed or failed) to the figures it wrote."""
    traffic.WRITTEN.clear()
    yield
    for path in traffic.WRITTEN:
        body = json.loads(path.read_text())
        body["outcome"] = request.node.stash.get(_OUTCOME, "error")
        path.write_text(json.dumps(body, indent=2) + "\n")


@dataclass
class System:
    """kiu as the chart installs it, reached through a stand-in for its Service."""

    cluster: Cluster
    release: Release
    balancer: Balancer

    @property
    def namespace(self) -> str:
        return self.release.namespace


@pytest.fixture(scope="module")
def system(kiu_cluster: Cluster) -> Iterator[System]:
    """The chart in a namespace of its own, shared by the scenarios of a module (each
    scenario leaves it whole again). Chart defaults for the gateway's shutdown delay;
    a short billing period so unit-hours can be checked within a scenario."""
    namespace = kiu_cluster.create_namespace(f"t-reliability-{uuid.uuid4().hex[:5]}")
    try:
        with (
            chart.installed(
                kiu_cluster, namespace, "gateway.shutdownDelay=5", "operator.billingPeriod=2"
            ) as release,
            Balancer(release) as balancer,
        ):
            wait_for(release.lease_holder, timeout=60, what="an operator to hold the Lease")
            yield System(kiu_cluster, release, balancer)
    finally:
        kiu_cluster.delete_namespace(namespace)


@dataclass
class Model:
    """A running ProjectVersion of the scenario and what calls it."""

    system: System
    name: str
    arn: str
    image: bytes

    def traffic(self, rate: float = WITHIN, *, attempts: int = 1) -> Traffic:
        return Traffic(
            self.system.release,
            endpoint_url=self.system.balancer.url,
            arn=self.arn,
            image=self.image,
            rate=rate,
            attempts=attempts,
        )

    def status(self) -> dict[str, Any]:
        return harness.status(self.system.cluster, self.system.namespace, self.name)

    def units(self) -> list[Any]:
        return harness.units(self.system.cluster, self.system.namespace, self.name)

    def ready_zones(self) -> list[str]:
        """Zones of the ready units, sorted."""
        return sorted(
            harness.pod_zone(self.system.cluster, p)
            for p in self.units()
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        )

    def replicas(self) -> dict[str, int]:
        return harness.replicas(self.system.cluster, self.system.namespace, self.name)

    def running(self, count: int = UNITS, *, timeout: float = 180) -> dict[str, Any]:
        return harness.wait_status(
            self.system.cluster,
            self.system.namespace,
            self.name,
            status="RUNNING",
            desiredInferenceUnits=count,
            inServiceInferenceUnits=count,
            timeout=timeout,
        )


@pytest.fixture
def model(system: System, cluster: Cluster) -> Iterator[Model]:
    """A ProjectVersion with three units (one per zone, no autoscaling), RUNNING and
    answering through the gateway; deleted after the scenario."""
    name = f"pv-{uuid.uuid4().hex[:6]}"
    spec = {"minInferenceUnits": UNITS, "inferenceUnit": {"runtime": "cpu", "tps": TPS}}
    cluster.apply(harness.projectversion(name, **spec), system.namespace)
    image = next(scenes.scenes("classification", seed=11, count=1)).image
    try:
        status = harness.wait_status(
            cluster,
            system.namespace,
            name,
            status="RUNNING",
            inServiceInferenceUnits=UNITS,
            timeout=240,
        )
        ready = Model(system, name, status["arn"], image)
        # Every gateway replica serves the model (a call each, at a gentle pace).
        for address in system.release.gateway_addresses():
            client = system.release.rekognition(f"http://{address}")
            wait_for(
                lambda client=client: client.detect_custom_labels(
                    ProjectVersionArn=ready.arn, Image={"Bytes": image}
                ),
                timeout=60,
                interval=1.0,
                what=f"the gateway at {address} to serve the model",
            )
            client.close()
        yield ready
    finally:
        cluster.custom().delete_namespaced_custom_object(
            harness.GROUP, harness.VERSION, system.namespace, harness.PLURAL, name
        )
