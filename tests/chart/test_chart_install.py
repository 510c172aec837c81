"""End to end: `helm install charts/kiu` into the local cluster, a ProjectVersion served
through the chart-installed gateway with boto3.

The node agent runs the chart's operator and gateway pods as processes with the
chart's own commands (`kiu operator ...`, `kiu gateway ...`); the namespace enforces
the restricted Pod Security Standard, so every pod the chart (and the operator)
creates must pass it. Both components are scoped to the test's namespace.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError, SSLError

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
    # One installation serves the checks of what RBAC alone cannot say.
    _gateway_writes_are_confined(release, namespace)
    _operator_writes_status_only(release, namespace)
    _users_get_roles(release, namespace)


#: A model whose units would pull from object storage with a namespace Secret: what a
#: compromised gateway would like to repoint. Stopped, so no unit starts.
_TARGET = {
    "apiVersion": "kiu.dev/v1alpha1",
    "kind": "ProjectVersion",
    "metadata": {"name": "guarded", "labels": {"team": "a"}, "annotations": {"owner": "a"}},
    "spec": {
        "project": "shapes",
        "state": "Stopped",
        "minInferenceUnits": 1,
        "model": {
            "name": "shapes-classifier",
            "repository": "s3://models/shapes",
            "task": "Classification",
        },
        "inferenceUnit": {"runtime": "cpu", "tps": 5, "repositorySecretName": "models-a"},
    },
}

_GATEWAY_REFUSED = {
    "image": {"spec": {"inferenceUnit": {"image": "attacker.example/miner:1"}}},
    "repositorySecretName": {"spec": {"inferenceUnit": {"repositorySecretName": "other"}}},
    "model.repository": {"spec": {"model": {"repository": "s3://attacker/models"}}},
    "tps": {"spec": {"inferenceUnit": {"tps": 500}}},
    "allowed and forbidden at once": {"spec": {"state": "Running", "model": {"name": "x"}}},
    "label added": {"metadata": {"labels": {"team": "b"}}},
    "label removed": {"metadata": {"labels": {"team": None}}},
    "other annotation": {"metadata": {"annotations": {"owner": "attacker"}}},
    "finalizer": {"metadata": {"finalizers": ["attacker.example/hold"]}},
}


def _pv(release: Release, namespace: str) -> dict[str, Any]:
    out = release.cluster.kubectl("get", "projectversion", "guarded", "-n", namespace, "-o", "json")
    return dict(json.loads(out.stdout))


def _guarded(release: Release, namespace: str) -> dict[str, Any]:
    """What the gateway must not change (the operator writes the status meanwhile)."""
    obj = _pv(release, namespace)
    kept = ("labels", "annotations", "finalizers", "ownerReferences")
    return {"spec": obj["spec"], **{k: obj["metadata"].get(k) for k in kept}}


def _path(namespace: str, subresource: str = "") -> str:
    suffix = f"/{subresource}" if subresource else ""
    return f"/apis/kiu.dev/v1alpha1/namespaces/{namespace}/projectversions/guarded{suffix}"


def _gateway_writes_are_confined(release: Release, namespace: str) -> None:
    """The ValidatingAdmissionPolicy, with the gateway's own token on the real API server:
    merge patches, as the gateway sends them."""
    release.cluster.apply(_TARGET, namespace)
    # (kept Stopped: the operator serves this namespace and would start units)
    allowed = [
        {"spec": {"state": "Stopped", "minInferenceUnits": 2, "maxInferenceUnits": 3}},
        {"spec": {"maxInferenceUnits": None}},
        {"metadata": {"annotations": {"kiu.dev/activation-requested-at": "2026-01-01T00:00:00Z"}}},
    ]
    for patch in allowed:
        status, answer = release.request_as("gateway", "PATCH", _path(namespace), patch)
        assert status == 200, (patch, answer)
    before = _guarded(release, namespace)
    assert (before["spec"]["state"], before["spec"]["minInferenceUnits"]) == ("Stopped", 2)
    assert "maxInferenceUnits" not in before["spec"]
    assert "kiu.dev/activation-requested-at" in before["annotations"]
    for case, patch in _GATEWAY_REFUSED.items():
        status, answer = release.request_as("gateway", "PATCH", _path(namespace), patch)
        assert (status, answer.get("reason")) == (403, "Forbidden"), (case, answer)
        assert "ValidatingAdmissionPolicy" in answer["message"], (case, answer)
        assert "The gateway may" in answer["message"], (case, answer)
        assert _guarded(release, namespace) == before, case
    for method, subresource, body in (
        ("DELETE", "", None),
        ("PATCH", "status", {"status": {"status": "RUNNING"}}),
        ("PATCH", "scale", {"spec": {"replicas": 4}}),
    ):
        status, answer = release.request_as("gateway", method, _path(namespace, subresource), body)
        assert status == 403, (method, subresource, answer)
    assert _guarded(release, namespace) == before


def _operator_writes_status_only(release: Release, namespace: str) -> None:
    """RBAC gives the operator the status subresource only, and the API server drops
    everything but status written there."""
    before = _guarded(release, namespace)
    image = {"spec": {"inferenceUnit": {"image": "attacker.example/miner:1"}}}
    status, answer = release.request_as("operator", "PATCH", _path(namespace), image)
    assert (status, answer.get("reason")) == (403, "Forbidden"), answer
    smuggled = {
        **image,
        "metadata": {"labels": {"team": "b"}, "annotations": {"owner": "attacker"}},
    }
    status, answer = release.request_as("operator", "PATCH", _path(namespace, "status"), smuggled)
    assert status == 200, answer
    assert _guarded(release, namespace) == before


def _users_get_roles(release: Release, namespace: str) -> None:
    """The built-in view and edit roles cover ProjectVersions (aggregation), and the
    invoker role lets an application call models and nothing else."""
    cluster = release.cluster
    people = {"viewer": "view", "editor": "edit", "app": f"{namespace}-kiu-invoker"}
    for account, role in people.items():
        cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
        cluster.kubectl(
            "create", "rolebinding", account, f"--clusterrole={role}",
            f"--serviceaccount={namespace}:{account}", "-n", namespace,
        )  # fmt: skip
    checks = {
        ("get", "projectversions.kiu.dev"): {"viewer", "editor"},
        ("watch", "projectversions.kiu.dev"): {"viewer", "editor"},
        ("get", "projectversions.kiu.dev", "--subresource=scale"): {"viewer", "editor"},
        ("create", "projectversions.kiu.dev"): {"editor"},
        ("patch", "projectversions.kiu.dev"): {"editor"},
        ("delete", "projectversions.kiu.dev"): {"editor"},
        ("update", "projectversions.kiu.dev", "--subresource=scale"): {"editor"},
        ("patch", "projectversions.kiu.dev", "--subresource=status"): set(),
        ("invoke", "projectversions.kiu.dev"): {"editor", "app"},
    }

    def answers() -> dict[tuple[str, ...], set[str]]:
        return {
            check: {
                account
                for account in people
                if cluster.kubectl(
                    "auth", "can-i", *check, "-n", namespace,
                    f"--as=system:serviceaccount:{namespace}:{account}", check=False,
                ).stdout.strip() == "yes"
            }
            for check in checks
        }  # fmt: skip

    # The aggregation controller fills view and edit from the chart's labelled roles.
    wait_for(lambda: answers() == checks, timeout=60, what="aggregated roles")
    editor = f"--as=system:serviceaccount:{namespace}:editor"
    cluster.kubectl("scale", "projectversion", "guarded", "--replicas=3", "-n", namespace, editor)
    assert _pv(release, namespace)["spec"]["minInferenceUnits"] == 3
    viewer = f"--as=system:serviceaccount:{namespace}:viewer"
    refused = cluster.kubectl(
        "scale", "projectversion", "guarded", "--replicas=1", "-n", namespace, viewer, check=False
    )
    assert refused.returncode != 0
    assert _pv(release, namespace)["spec"]["minInferenceUnits"] == 3


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


def test_the_gateway_serves_https_with_the_charts_certificate(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS on, as by default: the chart's self-signed certificate, boto3 verifying its CA,
    the Service's name resolved to a gateway pod (the local cluster has no DNS)."""
    with chart.installed(cluster, namespace, "gateway.tls.enabled=true") as release:
        secret = cluster.core().read_namespaced_secret(f"{RELEASE}-gateway-tls", namespace)
        ca = base64.b64decode(secret.data["ca.crt"])
        bundle = cluster.state_dir / f"ca-{namespace}.pem"
        bundle.write_bytes(ca)
        host = f"{RELEASE}-gateway.{namespace}.svc"
        address, port = release.gateway_addresses()[0].split(":")
        resolve = socket.getaddrinfo
        monkeypatch.setattr(
            socket,
            "getaddrinfo",
            lambda name, *rest, **kw: resolve(address if name == host else name, *rest, **kw),
        )
        try:
            client = release.rekognition(f"https://{host}:{port}", verify=str(bundle))
            with pytest.raises(ClientError) as refused:
                client.describe_project_versions(
                    ProjectArn=f"arn:kiu:rekognition:{namespace}:000000000000:project/none/1"
                )
            assert refused.value.response["Error"]["Code"] == "ResourceNotFoundException"
            # StartProjectVersion: the gateway's own patch passes its admission policy
            manifest = yaml.safe_load((REPO / "examples/shapes-classifier.yaml").read_text())
            manifest["spec"]["state"] = "Stopped"
            cluster.apply(manifest, namespace)
            arn = wait_for(
                lambda: release.status("shapes-classifier").get("arn"),
                timeout=60,
                what="the ProjectVersion's ARN",
            )
            started = wait_for(
                lambda: client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=2),
                timeout=30,
                what="the gateway to know the ProjectVersion",
            )
            assert started["Status"] == "STARTING"
            spec = cluster.custom().get_namespaced_custom_object(
                "kiu.dev", "v1alpha1", namespace, "projectversions", "shapes-classifier"
            )["spec"]
            assert (spec["state"], spec["minInferenceUnits"]) == ("Running", 2)
            assert "maxInferenceUnits" not in spec
            untrusting = release.rekognition(f"https://{host}:{port}")
            with pytest.raises(SSLError):
                untrusting.describe_project_versions(
                    ProjectArn=f"arn:kiu:rekognition:{namespace}:000000000000:project/none/1"
                )
        finally:
            bundle.unlink()
