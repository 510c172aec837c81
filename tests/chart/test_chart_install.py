"""End to end: `helm install charts/kiu` into the local cluster, a ProjectVersion served
through the chart-installed gateway with boto3.

The node agent runs the chart's operator and gateway pods as processes with the
chart's own commands (`kiu operator ...`, `kiu gateway ...`); the namespace enforces
the restricted Pod Security Standard, so every pod the chart (and the operator)
creates must pass it. Both components are scoped to the test's namespace.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kiu.imaging import scenes
from tests.chart import chart
from tests.chart.chart import LEASE, RELEASE, Release
from tests.cluster.fixtures import REPO, Cluster, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[Release]:
    with chart.installed(cluster, namespace) as installed:
        yield installed


def _classification_images() -> list[tuple[bytes, str]]:
    return [
        (scene.image, scene.objects[0].label)
        for scene in scenes.scenes("classification", seed=21, count=4)
    ]


def test_chart_installs_and_serves_a_projectversion_through_its_gateway(
    release: Release, cluster: Cluster, namespace: str
) -> None:
    # The chart's workloads run as it declares them: 2 operators (one leader), 2 gateways.
    operators, gateways = release.pods("operator"), release.pods("gateway")
    assert len(operators) == 2
    assert len(gateways) == 2
    for pod in (*operators, *gateways):
        (container,) = pod.spec.containers
        assert container.command == ["kiu"]
        assert pod.spec.security_context.run_as_non_root is True
    holder = wait_for(release.lease_holder, timeout=60, what="an operator to hold the Lease")
    assert holder in {p.metadata.name for p in operators}
    assert f"{RELEASE}-gateway" in release.notes
    assert "kubectl apply -n retail -f examples/shapes-classifier.yaml" in release.notes

    # The documented sample, as a user applies it.
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples/shapes-classifier.yaml"))
    status = wait_for(
        lambda: (
            (s := release.status("shapes-classifier")).get("status") == "RUNNING"
            and s.get("inServiceInferenceUnits") == 1
            and s
        ),
        timeout=180,
        what="shapes-classifier RUNNING with one unit in service",
    )
    assert status["tpsLimit"] == 5
    units = cluster.core().list_namespaced_pod(
        namespace, label_selector="kiu.dev/projectversion=shapes-classifier"
    )
    assert [p.spec.containers[0].command for p in units.items] == [["kiu"]]

    # Called with boto3, signed with the access key the chart created.
    rekognition = release.rekognition()
    arn = status["arn"]
    project_arn = arn.split("/version/")[0] + "/" + arn.rsplit("/", 1)[1]

    def described() -> Any:
        versions = rekognition.describe_project_versions(ProjectArn=project_arn)
        return versions["ProjectVersionDescriptions"]

    (description,) = wait_for(described, timeout=30, what="DescribeProjectVersions")
    assert description["ProjectVersionArn"] == arn
    assert description["Status"] == "RUNNING"
    right = 0
    for image, label in _classification_images():
        answer = wait_for(
            lambda image=image: rekognition.detect_custom_labels(
                ProjectVersionArn=arn, Image={"Bytes": image}
            ),
            timeout=30,
            what="DetectCustomLabels through the chart's gateway",
        )
        labels = answer["CustomLabels"]
        right += bool(labels) and labels[0]["Name"] == label
    assert right >= 3

    # The gateway authenticates by default: an unsigned call is refused.
    unsigned = urllib.request.Request(
        release.gateway_address() + "/",
        data=json.dumps({"ProjectArn": project_arn}).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.DescribeProjectVersions",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=10)
    assert refused.value.code == 403
    assert "MissingAuthenticationToken" in refused.value.read().decode()

    # The operator finds this release's gateway pods and scrapes their demand.
    image = _classification_images()[0][0]

    def demand_seen() -> bool:
        rekognition.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image})
        return bool(release.status("shapes-classifier").get("lastDemandTime"))

    wait_for(demand_seen, timeout=60, interval=0.3, what="the operator to measure demand")


def test_chart_rbac_is_least_privilege(release: Release, namespace: str) -> None:
    """What each ServiceAccount may and may not do, as the API server decides it."""
    operator_may = [
        ("list", "projectversions.kiu.dev", "-n", namespace),
        ("patch", "projectversions.kiu.dev", "--subresource=status", "-n", namespace),
        ("create", "deployments.apps", "-n", namespace),
        ("delete", "deployments.apps", "-n", namespace),
        ("patch", "services", "-n", namespace),
        ("patch", "poddisruptionbudgets.policy", "-n", namespace),
        ("watch", "pods", "-n", namespace),
        ("list", "nodes"),
        ("create", "events", "-n", namespace),
        ("update", f"leases.coordination.k8s.io/{LEASE}", "-n", namespace),
    ]
    operator_may_not = [
        ("get", "secrets", "-n", namespace),
        ("list", "secrets", "-n", namespace),
        ("patch", "projectversions.kiu.dev", "-n", namespace),
        ("delete", "projectversions.kiu.dev", "-n", namespace),
        ("delete", "services", "-n", namespace),
        ("create", "pods", "-n", namespace),
        ("list", "projectversions.kiu.dev", "-n", "default"),
        ("create", "deployments.apps", "-n", "default"),
        ("update", "leases.coordination.k8s.io/someone-else", "-n", namespace),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("patch", "nodes"),
    ]
    gateway_may = [
        ("list", "projectversions.kiu.dev", "-n", namespace),
        ("patch", "projectversions.kiu.dev", "-n", namespace),
        ("watch", "endpointslices.discovery.k8s.io", "-n", namespace),
        ("list", "secrets/kiu-access-key-test", "-n", namespace),
        ("watch", "secrets/kiu-access-key-test", "-n", namespace),
        ("create", "tokenreviews.authentication.k8s.io"),
        ("create", "subjectaccessreviews.authorization.k8s.io"),
        ("get", "nodes"),
    ]
    gateway_may_not = [
        ("list", "secrets", "-n", "default"),
        ("list", "secrets", "-n", namespace),
        ("get", "secrets/kiu-access-key-test", "-n", namespace),
        ("list", "secrets/sh.helm.release.v1.kiu.v1", "-n", namespace),
        ("create", "secrets", "-n", namespace),
        ("delete", "projectversions.kiu.dev", "-n", namespace),
        ("create", "projectversions.kiu.dev", "-n", namespace),
        ("update", "projectversions.kiu.dev", "-n", namespace),
        ("patch", "projectversions.kiu.dev", "--subresource=status", "-n", namespace),
        ("list", "pods", "-n", namespace),
        ("create", "deployments.apps", "-n", namespace),
        ("list", "nodes"),
        ("list", "projectversions.kiu.dev", "-n", "default"),
    ]
    for component, allowed, denied in (
        ("operator", operator_may, operator_may_not),
        ("gateway", gateway_may, gateway_may_not),
    ):
        assert [a for a in allowed if not release.can(component, *a)] == [], component
        assert [d for d in denied if release.can(component, *d)] == [], component


def test_the_standby_operator_takes_over(
    release: Release, cluster: Cluster, namespace: str
) -> None:
    leader = wait_for(release.lease_holder, timeout=60, what="an operator to hold the Lease")
    cluster.core().delete_namespaced_pod(leader, namespace)
    new = wait_for(
        lambda: (h := release.lease_holder()) not in {None, leader} and h,
        timeout=60,
        what="the standby to take the Lease",
    )
    assert new in {p.metadata.name for p in release.pods("operator")}
    # The new leader acts: a ProjectVersion applied now gets its units.
    manifest = yaml.safe_load((REPO / "examples/shapes-classifier.yaml").read_text())
    manifest["spec"].pop("maxInferenceUnits")
    manifest["spec"]["minInferenceUnits"] = 2
    cluster.apply(manifest, namespace)
    wait_for(
        lambda: release.status("shapes-classifier").get("inServiceInferenceUnits") == 2,
        timeout=180,
        what="two units in service under the new leader",
    )
