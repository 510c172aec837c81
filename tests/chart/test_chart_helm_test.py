"""`helm test` on the local cluster: the chart's test Pod calls DescribeProjectVersions
through the gateway Service. A ClusterIP routes only where kube-proxy runs."""

from __future__ import annotations

import pytest

from tests.chart import chart
from tests.cluster.fixtures import Cluster

pytestmark = pytest.mark.cluster


def test_helm_test_reaches_the_gateway_through_its_service(
    cluster: Cluster, namespace: str
) -> None:
    if not (cluster.state_dir / "config" / "kube-proxy.enabled").exists():
        pytest.skip("kube-proxy is not running: a ClusterIP does not route")
    with chart.installed(cluster, namespace):
        service = cluster.core().read_namespaced_service(f"{chart.RELEASE}-gateway", namespace)
        port = service.spec.ports[0].port
        # The local cluster has no cluster DNS: the test Pod gets the Service's ClusterIP,
        # as a user of such a cluster would give it.
        cluster.helm(
            "upgrade",
            chart.RELEASE,
            str(chart.CHART),
            "--namespace",
            namespace,
            "--reuse-values",
            "--set",
            f"helmTest.endpoint=http://{service.spec.cluster_ip}:{port}",
            "--wait",
            "--timeout=300s",
            timeout=360,
        )
        done = cluster.helm(
            "test",
            chart.RELEASE,
            "--namespace",
            namespace,
            "--logs",
            "--timeout=180s",
            check=False,
            timeout=240,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{chart.RELEASE}-test-describe" in done.stdout
    assert "Succeeded" in done.stdout
    assert "HTTP 400 ResourceNotFoundException" in done.stdout
