"""The gateway's Kubernetes source against the local cluster's API server.

EndpointSlices are written by the test (``managed-by: kiu-test``, which the
EndpointSlice controller leaves alone) and point at real `kiu unit` processes
on loopback, so everything but the operator is real: list/watch, the ARN from
the object, Start/Stop as merge patches (twenty parallel copies of one signed
Start carried out once), access keys from Secrets, the replica
count from the gateway's own slices, TokenReview and SubjectAccessReview.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from kiu.gateway import command
from kiu.imaging import scenes

from . import processes
from .conftest import rekognition
from .signing import ACCESS_KEY, SECRET_KEY, sign

pytestmark = pytest.mark.cluster


def projectversion(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kiu.dev/v1alpha1",
        "kind": "ProjectVersion",
        "metadata": {"name": name},
        "spec": {
            "project": "shapes",
            "minInferenceUnits": 1,
            "model": {
                "name": "shapes-classifier",
                "repository": "/models",
                "task": "Classification",
            },
            "inferenceUnit": {"runtime": "cpu", "tps": 20},
        },
    }


def endpoint_slice(
    name: str,
    service: str,
    port: int,
    *endpoints: tuple[str, str, bool],
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "kiu-test",
                **(labels or {}),
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [address], "zone": zone, "conditions": {"ready": ready}}
            for address, zone, ready in endpoints
        ],
    }


def apply(cluster: Any, namespace: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def get(cluster: Any, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout)


def set_status(cluster: Any, namespace: str, name: str, value: str) -> None:
    """Play the operator's part: write the status value a gateway reports."""
    cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "projectversions.kiu.dev",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"status": value}}),
    )


async def eventually(check: Any, *, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            if await asyncio.to_thread(check):
                return
        except ClientError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.3)


async def copies(
    port: int, operation: str, document: dict[str, Any], *, count: int
) -> list[tuple[int, str]]:
    """Send ``count`` copies of one signed request at once; each status and Status or error."""
    url = f"http://127.0.0.1:{port}/"
    body = json.dumps(document).encode()
    headers = sign(
        url=url,
        body=body,
        headers={
            "X-Amz-Target": f"RekognitionService.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )

    async def one(session: aiohttp.ClientSession) -> tuple[int, str]:
        async with session.post(url, data=body, headers=headers) as response:
            answer = json.loads(await response.read())
            return response.status, answer.get("Status") or answer["__type"]

    connector = aiohttp.TCPConnector(limit=count, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        return list(await asyncio.gather(*(one(session) for _ in range(count))))


def caller(namespace: str) -> list[dict[str, Any]]:
    """ServiceAccount ``caller``, allowed to invoke the models of its namespace."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "caller"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "invoke"},
            "rules": [
                {"apiGroups": ["kiu.dev"], "resources": ["projectversions"], "verbs": ["invoke"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "caller-invokes"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "invoke"},
            "subjects": [{"kind": "ServiceAccount", "name": "caller", "namespace": namespace}],
        },
    ]


@pytest.fixture
def elsewhere(cluster: Any, namespace: str) -> Iterator[str]:
    """A second namespace: another tenant."""
    name = cluster.create_namespace(f"{namespace[:50]}-other")
    try:
        yield name
    finally:
        cluster.delete_namespace(name)


@pytest.fixture
def pod_network_unit(cluster: Any, tmp_path: Path) -> Iterator[processes.Unit]:
    """A unit on the cluster's pod network address: EndpointSlices refuse loopback."""
    host = urllib.parse.urlsplit(cluster_server(cluster)).hostname or ""
    with processes.units([("shapes-classifier", "zone-a")], tmp_path, host=host) as (unit,):
        yield unit


def cluster_server(cluster: Any) -> str:
    config = json.loads(cluster.kubectl("config", "view", "--minify", "-o", "json").stdout)
    return str(config["clusters"][0]["cluster"]["server"])


async def test_gateway_follows_the_cluster(
    cluster: Any,
    namespace: str,
    elsewhere: str,
    pod_network_unit: processes.Unit,
    projectversion_crd: None,
) -> None:
    unit = pod_network_unit
    apply(cluster, namespace, projectversion("shoes-v3"))
    cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "projectversions.kiu.dev",
        "shoes-v3",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"status": "RUNNING"}}),
    )
    model_labels = {"kiu.dev/projectversion": "shoes-v3"}
    apply(
        cluster,
        namespace,
        endpoint_slice(
            "shoes-v3-a",
            "shoes-v3",
            unit.grpc_port,
            (unit.host, "zone-a", True),
            labels=model_labels,
        ),
        endpoint_slice(
            "gw", "kiu-gateway", 8080, ("10.1.0.1", "zone-a", True), ("10.1.0.2", "zone-b", True)
        ),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "team-key", "labels": {"kiu.dev/access-key": "true"}},
            "stringData": {
                "accessKeyId": ACCESS_KEY,
                "secretAccessKey": SECRET_KEY,
                "namespaces": namespace,
            },
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "stranger"}},
        *caller(namespace),
    )
    apply(cluster, elsewhere, *caller(elsewhere))
    created = get(cluster, namespace, "projectversions.kiu.dev", "shoes-v3")["metadata"][
        "creationTimestamp"
    ]
    options = command.parser().parse_args(
        [
            "--kubernetes",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--namespace",
            namespace,
            "--gateway-namespace",
            namespace,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--internal-port",
            "0",
            "--zone",
            "zone-a",
            "--hold-timeout-seconds",
            "1",
            "--access-key-secret",
            "team-key",
        ]
    )
    gateway, closing = await command.build(options)
    await gateway.start(sync_timeout=60)
    try:
        client = rekognition(gateway.port)
        entry = gateway.catalog.get(namespace, "shoes-v3")
        assert entry is not None
        assert entry.spec.arn.startswith(
            f"arn:kiu:rekognition:{namespace}:000000000000:project/shapes/version/shoes-v3/"
        )
        assert (gateway.catalog.replicas, entry.tps_limit, entry.bucket.rate) == (2, 20.0, 10.0)
        scene = next(scenes.scenes("classification", seed=41, count=1))
        answer = await asyncio.to_thread(
            client.detect_custom_labels,
            ProjectVersionArn=entry.spec.arn,
            Image={"Bytes": scene.image},
        )
        assert answer["CustomLabels"][0]["Name"] == scene.objects[0].label
        project_arn = entry.spec.arn.split("/version/")[0] + "/1"
        described = await asyncio.to_thread(
            client.describe_project_versions, ProjectArn=project_arn
        )
        assert [d["Status"] for d in described["ProjectVersionDescriptions"]] == ["RUNNING"]
        assert created

        # Stop and Start are merge patches on the spec
        assert (
            await asyncio.to_thread(client.stop_project_version, ProjectVersionArn=entry.spec.arn)
        )["Status"] == "STOPPING"
        spec = get(cluster, namespace, "projectversions.kiu.dev", "shoes-v3")["spec"]
        assert spec["state"] == "Stopped"
        await eventually(lambda: entry.spec.state == "Stopped")
        set_status(cluster, namespace, "shoes-v3", "STOPPED")
        await eventually(lambda: entry.spec.status == "STOPPED")
        # twenty copies of one signed Start at once: exactly one is carried out
        answers = await copies(
            gateway.port,
            "StartProjectVersion",
            {"ProjectVersionArn": entry.spec.arn, "MinInferenceUnits": 2, "MaxInferenceUnits": 3},
            count=20,
        )
        assert sorted(answers) == [(200, "STARTING")] + [(400, "InvalidSignatureException")] * 19
        spec = get(cluster, namespace, "projectversions.kiu.dev", "shoes-v3")["spec"]
        assert (spec["state"], spec["minInferenceUnits"], spec["maxInferenceUnits"]) == (
            "Running",
            2,
            3,
        )
        set_status(cluster, namespace, "shoes-v3", "RUNNING")
        await eventually(lambda: entry.spec.status == "RUNNING")

        # bearer tokens: TokenReview, then SubjectAccessReview for verb invoke; a caller of
        # another namespace, allowed to invoke there, is a stranger here
        url = f"http://127.0.0.1:{gateway.port}/v1/namespaces/{namespace}/projectversions/shoes-v3:detect"
        async with aiohttp.ClientSession() as session:
            for home, account, expected in (
                (namespace, "caller", 200),
                (namespace, "stranger", 400),
                (elsewhere, "caller", 400),
            ):
                token = cluster.kubectl("create", "token", account, "-n", home).stdout.strip()
                headers = {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "image/png" if scene.format == "PNG" else "image/jpeg",
                }
                async with session.post(url, data=scene.image, headers=headers) as response:
                    body = json.loads(await response.read())
                    assert response.status == expected, body
                    if expected != 200:
                        assert body["__type"] == "AccessDeniedException"
            headers = {"Authorization": "Bearer not-a-token", "Content-Type": "image/png"}
            async with session.post(url, data=scene.image, headers=headers) as response:
                assert json.loads(await response.read())["__type"] == "UnrecognizedClientException"

        # the unit stops being ready: it leaves the routing table; a call is held for the
        # hold timeout (1 s here), asks the operator for a unit with the activation
        # annotation, and is refused with a retry hint when none comes
        apply(
            cluster,
            namespace,
            endpoint_slice(
                "shoes-v3-a",
                "shoes-v3",
                unit.grpc_port,
                (unit.host, "zone-a", False),
                labels=model_labels,
            ),
        )
        await eventually(lambda: len(entry.pool) == 0)
        with pytest.raises(ClientError) as caught:
            await asyncio.to_thread(
                client.detect_custom_labels,
                ProjectVersionArn=entry.spec.arn,
                Image={"Bytes": scene.image},
            )
        assert caught.value.response["Error"]["Code"] == "ResourceNotReadyException"
        assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "5"
        annotations = get(cluster, namespace, "projectversions.kiu.dev", "shoes-v3")["metadata"][
            "annotations"
        ]
        assert "kiu.dev/activation-requested-at" in annotations

        # the key's Secret goes away: its signatures are no longer recognized
        cluster.kubectl("delete", "-n", namespace, "secret", "team-key")
        await eventually(lambda: gateway.catalog.access_key(ACCESS_KEY) is None)
        with pytest.raises(ClientError) as caught:
            await asyncio.to_thread(client.describe_project_versions, ProjectArn=project_arn)
        assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"
    finally:
        await gateway.stop()
        for close in closing:
            await close()
