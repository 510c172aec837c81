"""Running `kiu operator` against the local cluster, and reading what it did.

The operator runs on the host as a subprocess, serving only the test's
namespace and taking its Lease there, so tests (and other test runs) never
share an operator. Units are real `kiu unit` pods run by the node agent.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.cluster.fixtures import REPO, Cluster, wait_for
from tests.ports import free_port

GROUP, VERSION, PLURAL = "kiu.dev", "v1alpha1", "projectversions"
#: Where the repository's models are on this host; the ProjectVersions name the bundled
#: path, which the operator maps here (--cpu-model-repository), as a deployment would.
MODELS = REPO / "triton-models"
BUNDLED = "/opt/kiu/triton-models"
MODEL = "shapes-classifier"
KIU = Path(sys.executable).with_name("kiu")


#: Seconds between evaluations of the operators the tests start.
EVALUATION_PERIOD = 1


class Operator:
    """One `kiu operator` process for one namespace."""

    def __init__(self, cluster: Cluster, namespace: str, log_dir: Path, *args: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.args = args
        self.port = free_port()
        self.log_path = log_dir / f"operator-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        argv = [
            str(KIU),
            "operator",
            "--namespace",
            self.namespace,
            "--lease-namespace",
            self.namespace,
            "--identity",
            f"test-{self.port}",
            "--metrics-port",
            str(self.port),
            "--evaluation-period",
            str(EVALUATION_PERIOD),
            "--failure-timeout",
            "20",
            "--gateway-namespace",
            self.namespace,
            "--cpu-model-repository",
            str(MODELS),
            *self.args,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv, env=self.cluster.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        log.close()
        wait_for(self.healthy, timeout=60, what=f"operator on port {self.port} to serve /healthz")
        return self

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited {self.process.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def leading(self) -> bool:
        return "kiu_operator_leader 1.0" in self.metrics()

    def kill(self) -> None:
        """SIGKILL: no cleanup, the Lease is left to expire."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def projectversion(name: str, **spec: Any) -> dict[str, Any]:
    """A ProjectVersion on the cpu runtime serving the repository's test model."""
    body: dict[str, Any] = {
        "project": "shapes",
        "model": {"name": MODEL, "repository": BUNDLED, "task": "Classification"},
        "inferenceUnit": {"runtime": "cpu", "tps": 5},
    }
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProjectVersion",
        "metadata": {"name": name},
        "spec": body,
    }


def get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.custom().get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, namespace, name).get("status") or {})


def patch_spec(cluster: Cluster, namespace: str, name: str, **spec: Any) -> None:
    cluster.custom().patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
    )


def wait_status(
    cluster: Cluster, namespace: str, name: str, timeout: float = 180.0, **expected: Any
) -> dict[str, Any]:
    """Wait until every `expected` status field has its value; returns the status."""

    def matches() -> dict[str, Any] | None:
        current = status(cluster, namespace, name)
        return current if all(current.get(k) == v for k, v in expected.items()) else None

    return wait_for(matches, timeout=timeout, interval=0.25, what=f"{name} status {expected}")


def units(cluster: Cluster, namespace: str, name: str) -> list[Any]:
    """Unit pods of a ProjectVersion that are not being deleted."""
    pods = cluster.core().list_namespaced_pod(
        namespace, label_selector=f"kiu.dev/projectversion={name}"
    )
    return [p for p in pods.items if not p.metadata.deletion_timestamp]


def all_pods(cluster: Cluster, namespace: str, name: str) -> list[Any]:
    pods = cluster.core().list_namespaced_pod(
        namespace, label_selector=f"kiu.dev/projectversion={name}"
    )
    return list(pods.items)


def replicas(cluster: Cluster, namespace: str, name: str) -> dict[str, int]:
    """Replicas per zone of the ProjectVersion's Deployments."""
    items = cluster.apps().list_namespaced_deployment(
        namespace, label_selector=f"kiu.dev/projectversion={name}"
    )
    return {d.metadata.labels["kiu.dev/zone"]: d.spec.replicas for d in items.items}


def pod_zone(cluster: Cluster, pod: Any) -> str:
    node = cluster.core().read_node(pod.spec.node_name)
    return str(node.metadata.labels["topology.kubernetes.io/zone"])


def restarts(pod: Any) -> int:
    return sum(s.restart_count for s in pod.status.container_statuses or [])


def events(cluster: Cluster, namespace: str, name: str) -> list[tuple[str, str, str]]:
    items = cluster.core().list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=ProjectVersion"
    )
    return [(e.type, e.reason, e.message) for e in items.items]


def wait_event(
    cluster: Cluster, namespace: str, name: str, reason: str, timeout: float = 60.0
) -> tuple[str, str, str]:
    return wait_for(
        lambda: next((e for e in events(cluster, namespace, name) if e[1] == reason), None),
        timeout=timeout,
        what=f"an Event {reason} for {name}",
    )


def condition(current: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in current.get("conditions", []) if c["type"] == kind)
