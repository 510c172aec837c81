"""Helpers for the harness tests in this folder.

The shared fixtures (``kiu_cluster``, ``cluster``, ``namespace``) live in
tests/cluster/fixtures.py and are registered for every test folder by
tests/conftest.py; they are not redefined here, so there is exactly one
session-scoped cluster per run.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from .fixtures import ZONE_LABEL, Cluster, wait_for

HTTP_PORT = 8080


def http_pod_spec(**extra: Any) -> dict[str, Any]:
    """A pod spec running `python -m http.server` with an HTTP readiness probe."""
    container = {
        "name": "web",
        "image": "python:3.11-slim",
        "command": ["python3", "-m", "http.server", str(HTTP_PORT)],
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }
    spec: dict[str, Any] = {"terminationGracePeriodSeconds": 2, "containers": [container]}
    spec.update(extra)
    return spec


def deployment(name: str, replicas: int, pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


def zone_spread(app: str) -> list[dict[str, Any]]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": ZONE_LABEL,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": app}},
        }
    ]


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": HTTP_PORT}]},
    }


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def live_pods(cluster: Cluster, namespace: str, selector: str) -> list[Any]:
    items = cluster.core().list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in items if not p.metadata.deletion_timestamp]


def wait_ready_pods(
    cluster: Cluster, namespace: str, selector: str, count: int, timeout: float = 90.0
) -> list[Any]:
    def ready() -> list[Any] | None:
        pods = [p for p in live_pods(cluster, namespace, selector) if is_ready(p)]
        return pods if len(pods) == count else None

    return wait_for(ready, timeout=timeout, what=f"{count} Ready pods with {selector}")


def ready_endpoints(cluster: Cluster, namespace: str, service_name: str) -> set[str]:
    slices = cluster.discovery().list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service_name}"
    )
    return {
        address
        for s in slices.items
        for ep in s.endpoints or []
        if ep.conditions and ep.conditions.ready
        for address in ep.addresses
    }


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) or (0, error) when the connection fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError as e:
        return 0, str(e)


def node_zone(cluster: Cluster, node: str) -> str:
    return str(cluster.core().read_node(node).metadata.labels[ZONE_LABEL])


@pytest.fixture
def web(cluster: Cluster, namespace: str) -> list[Any]:
    """Deployment `web` (3 replicas spread over the zones) and Service `web`,
    Ready; returns the pods."""
    spec = http_pod_spec(topologySpreadConstraints=zone_spread("web"))
    cluster.apply([deployment("web", 3, spec), service("web")], namespace)
    return wait_ready_pods(cluster, namespace, "app=web", 3)
