"""Rendering charts/kiu with the pinned helm, reading what it renders, and installing it
into the local cluster (:class:`Release`)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.fixtures import BIN, REPO, Cluster

CHART = REPO / "charts" / "kiu"
VALUES = Path(__file__).resolve().parent / "values"
VALUES_FILES = sorted(VALUES.glob("*.yaml"))
HELM = BIN / "helm"
#: The Kubernetes version the local cluster runs (hack/versions.env).
KUBE_VERSION = "1.36.3"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm with no cluster and no user configuration."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "HELM_CACHE_HOME": str(REPO / ".kiu" / "helm" / "cache"),
        "HELM_CONFIG_HOME": str(REPO / ".kiu" / "helm" / "config"),
        "HELM_DATA_HOME": str(REPO / ".kiu" / "helm" / "data"),
        "KUBECONFIG": "/dev/null",
    }
    proc = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def template(
    *values_files: Path,
    set_values: Iterable[str] = (),
    namespace: str = "kiu-system",
    release: str = "kiu",
) -> list[dict[str, Any]]:
    """The objects `helm template` renders (empty documents dropped); RenderError if helm
    refuses."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    args += ["--kube-version", KUBE_VERSION, "--include-crds"]
    for path in values_files:
        args += ["--values", str(path)]
    for item in set_values:
        args += ["--set", item]
    proc = helm(*args, check=False)
    if proc.returncode != 0:
        raise RenderError(proc.stderr)
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


class RenderError(Exception):
    """helm refused the values (the schema) or failed to render."""


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = of_kind(objects, kind, name)
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]


def of_kind(
    objects: list[dict[str, Any]], kind: str, name: str | None = None
) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every workload."""
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    ]


def args_of(objects: list[dict[str, Any]], deployment: str) -> list[str]:
    (container,) = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return [*container["command"], *container["args"]]


# -- the chart installed into the local cluster -------------------------------------------

GROUP, VERSION, PLURAL = "kiu.dev", "v1alpha1", "projectversions"
RELEASE = "kiu"
#: The gateway's internal port (/metrics, probes, the replica exchange): the chart default.
GATEWAY_INTERNAL_PORT = 9090
LEASE = "kiu-operator"
KEY_ID = "AKIAKIUCHARTTEST0001"


class Release:
    """The installed chart in one namespace, and ways to reach what it runs."""

    def __init__(self, cluster: Cluster, namespace: str, notes: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.notes = notes

    def pods(self, component: str) -> list[Any]:
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
        items = self.cluster.core().list_namespaced_pod(self.namespace, label_selector=selector)
        return [p for p in items.items if not p.metadata.deletion_timestamp]

    def gateway_addresses(self) -> list[str]:
        """The ready endpoints of the gateway Service, as host:port (the local cluster has
        no cluster DNS and no kube-proxy)."""
        slices = self.cluster.discovery().list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={RELEASE}-gateway"
        )
        return sorted(
            f"{endpoint.addresses[0]}:8080"
            for piece in slices.items
            for endpoint in piece.endpoints or []
            if endpoint.conditions and endpoint.conditions.ready
        )

    def gateway_metrics(self, address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The kiu_gateway_* samples of the replica at API address host:port, read on its
        internal port (gateway.internalPort, 9090): (name, sorted labels but the namespace)."""
        from prometheus_client.parser import text_string_to_metric_families

        host = address.rsplit(":", 1)[0]
        url = f"http://{host}:{GATEWAY_INTERNAL_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            (
                s.name,
                tuple(sorted((k, v) for k, v in s.labels.items() if k != "namespace")),
            ): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("kiu_gateway_")
        }

    def peer_found_gone(self, observer: str, peer: str) -> int:
        """How often the gateway at host `observer` has logged its peer at host `peer` gone
        (refusing connections). The kubelet restarts a killed replica at once, so the
        gone state lasts only until it listens again; the log keeps the finding."""
        pod = next(p for p in self.pods("gateway") if p.status.pod_ip == observer)
        logs = self.cluster.kubectl("logs", pod.metadata.name, "-n", self.namespace, check=False)
        return sum(
            f"replica at {peer}:" in line and "refuses connections" in line
            for line in str(logs.stdout).splitlines()
        )

    def gateway_address(self) -> str:
        """A ready endpoint of the gateway Service as a URL."""
        addresses = self.gateway_addresses()
        if not addresses:
            raise AssertionError("the gateway Service has no ready endpoint")
        return f"http://{addresses[0]}"

    def secret_key(self) -> str:
        secret = self.cluster.core().read_namespaced_secret(
            f"{RELEASE}-access-key-test", self.namespace
        )
        assert secret.metadata.labels["kiu.dev/access-key"] == "test"
        assert base64.b64decode(secret.data["accessKeyId"]).decode() == KEY_ID
        return base64.b64decode(secret.data["secretAccessKey"]).decode()

    def rekognition(
        self,
        endpoint_url: str | None = None,
        *,
        attempts: int = 1,
        connections: int = 10,
        verify: str | None = None,
    ) -> Any:
        """A boto3 client signed with the chart's test key (standard retry mode)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "rekognition",
            endpoint_url=endpoint_url or self.gateway_address(),
            region_name=self.namespace,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=self.secret_key(),
            verify=verify,
            config=Config(
                retries={"total_max_attempts": attempts, "mode": "standard"},
                max_pool_connections=connections,
            ),
        )

    def lease_holder(self) -> str | None:
        proc = self.cluster.kubectl(
            "get", "lease", LEASE, "-n", self.namespace, "-o", "json", check=False
        )
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout)["spec"].get("holderIdentity")

    def status(self, name: str) -> dict[str, Any]:
        obj = self.cluster.custom().get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return dict(obj.get("status") or {})

    def can(self, component: str, *args: str) -> bool:
        account = f"system:serviceaccount:{self.namespace}:{RELEASE}-{component}"
        proc = self.cluster.kubectl("auth", "can-i", *args, f"--as={account}", check=False)
        return proc.stdout.strip() == "yes"

    def request_as(
        self, component: str, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        """One API request with a token of the component's own ServiceAccount (no
        impersonation: the API server authenticates it as the pod's token); a body is sent
        as a merge patch. The status and the JSON answer."""
        token = self.cluster.kubectl(
            "create", "token", f"{RELEASE}-{component}", "-n", self.namespace
        ).stdout.strip()
        view = self.cluster.kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout
        server = json.loads(view)["clusters"][0]["cluster"]
        context = ssl.create_default_context(
            cadata=base64.b64decode(server["certificate-authority-data"]).decode()
        )
        request = urllib.request.Request(
            server["server"] + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/merge-patch+json",
            },
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())


@contextlib.contextmanager
def installed(cluster: Cluster, namespace: str, *set_values: str) -> Iterator[Release]:
    """`helm install` the chart into `namespace` (restricted Pod Security, both components
    scoped to it, tests/chart/values/local-cluster.yaml); logs printed and uninstalled
    afterwards."""
    # Every pod of the namespace must pass the restricted Pod Security Standard.
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    args = [
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(VALUES / "local-cluster.yaml"),
        "--set",
        f"operator.cpuModelRepository={REPO / 'triton-models'}",
        "--set",
        f"operator.watchNamespaces={{{namespace}}}",
        "--set",
        f"gateway.watchNamespaces={{{namespace}}}",
        "--set",
        f"networkPolicy.unitNamespaces={{{namespace}}}",
    ]
    for item in set_values:
        args += ["--set", item]
    proc = cluster.helm(*args, "--wait", "--timeout=300s", timeout=360)
    cluster.wait_established()
    release = Release(cluster, namespace, proc.stdout)
    try:
        yield release
    finally:
        for component in ("operator", "gateway"):
            for pod in release.pods(component):
                name = pod.metadata.name
                logs = cluster.kubectl("logs", "-n", namespace, name, "--tail=40", check=False)
                print(f"---- {name}\n{logs.stdout}{logs.stderr}")
        cluster.helm("uninstall", RELEASE, "--namespace", namespace, "--wait", check=False)
