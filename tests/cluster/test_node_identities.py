"""The node agent runs each node as that node's kubelet: the Node authorizer and
NodeRestriction confine every node's certificate to its own Node, Lease and pods, and the
agent's kubelet API serves only the API server."""

from __future__ import annotations

import importlib
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .fixtures import STATE, Cluster, wait_for

pytestmark = pytest.mark.cluster

_config = importlib.import_module("localcluster.config")
_pki = importlib.import_module("localcluster.pki")
PKI = STATE / "pki"


@contextmanager
def core_as(node: str) -> Iterator[Any]:
    """A CoreV1Api that authenticates with the node's own certificate from the cluster's pki."""
    stem = _pki.node_client(node).stem
    cfg = client.Configuration()
    cfg.host = _config.APISERVER_URL
    cfg.ssl_ca_cert = str(PKI / "ca.crt")
    cfg.cert_file = str(PKI / f"{stem}.crt")
    cfg.key_file = str(PKI / f"{stem}.key")
    with client.ApiClient(cfg) as api:
        yield client.CoreV1Api(api)


def forbidden(call: Callable[[], Any]) -> str:
    """The message of the 403 the call must get."""
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status == 403, refused.value.body
    return str(json.loads(refused.value.body)["message"])


def secret(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"key": name},
    }


def test_a_node_reads_only_the_secrets_of_pods_bound_to_it(
    cluster: Cluster, namespace: str
) -> None:
    here = cluster.nodes("zone-a", simulated=True)[0]
    there = cluster.nodes("zone-b", simulated=True)[0]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "holder"},
        "spec": {
            "nodeName": here,
            "containers": [{"name": "main", "image": "none", "command": ["true"]}],
            "volumes": [{"name": "mounted", "secret": {"secretName": "mounted"}}],
        },
    }
    cluster.apply([secret("mounted"), secret("unreferenced"), pod], namespace)
    with core_as(here) as core:
        # The Node authorizer links the pod to its secret once it sees the pod bound.
        mounted = wait_for(
            lambda: _read_or_none(core, "mounted", namespace),
            timeout=30,
            what=f"{here} to read the secret its pod mounts",
        )
        assert mounted.metadata.name == "mounted"
        message = forbidden(lambda: core.read_namespaced_secret("unreferenced", namespace))
        assert "no relationship found" in message
    with core_as(there) as core:
        forbidden(lambda: core.read_namespaced_secret("mounted", namespace))


def _read_or_none(core: Any, name: str, namespace: str) -> Any:
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as e:
        if e.status != 403:
            raise
        return None


def test_a_node_cannot_post_another_nodes_status(cluster: Cluster) -> None:
    me, other = cluster.nodes("zone-a")[0], cluster.nodes("zone-b")[0]
    body = {"metadata": {"annotations": {"kiu.dev/posted-by": me}}}
    with core_as(me) as core:
        message = forbidden(lambda: core.patch_node_status(other, body))
    assert f'node "{me}" is not allowed to modify node "{other}"' in message


def test_a_node_cannot_change_its_own_taints(cluster: Cluster) -> None:
    me = cluster.nodes("zone-a")[0]
    taint = {"key": "kiu.dev/self-tainted", "value": "true", "effect": "NoSchedule"}
    with core_as(me) as core:
        message = forbidden(lambda: core.patch_node(me, {"spec": {"taints": [taint]}}))
    assert "is not allowed to modify taints" in message
    assert not cluster.core().read_node(me).spec.taints


def test_the_kubelet_api_serves_only_the_api_server(cluster: Cluster, namespace: str) -> None:
    """`kubectl logs` works (tests/cluster/test_harness.py); a node's certificate gets 403."""
    stem = _pki.node_client(cluster.nodes("zone-a")[0]).stem
    tls = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    tls.load_cert_chain(str(PKI / f"{stem}.crt"), str(PKI / f"{stem}.key"))
    url = f"https://{_config.BRIDGE_IP}:{_config.KUBELET_PORT}/containerLogs/{namespace}/p/c"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5, context=tls)
    refused.value.close()
    assert refused.value.code == 403
