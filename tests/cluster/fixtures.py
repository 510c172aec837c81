"""Fixtures for end-to-end tests on the local cluster (hack/cluster.sh).

Registered for the whole test tree by tests/conftest.py
(``pytest_plugins = ["tests.cluster.fixtures"]``), so any test can ask for:

``kiu_cluster`` (session)
    A :class:`Cluster`. Starts the cluster once per run with ``hack/cluster.sh up``
    (which builds the binaries first if needed) or reuses a running one. At the
    end the last test run using it stops it if a test run started it (a cluster
    started by hand with ``make cluster-up`` is left running), unless
    ``KIU_KEEP_CLUSTER=1``.
``cluster`` (function)
    The same handle; after the test, any control plane component the test left
    stopped is started again and any zone it left down is repaired (and its nodes
    are Ready again) so the next test starts from a whole cluster.
``projectversion_crd`` (session)
    The ProjectVersion CRD from crds/, applied and Established.
``namespace`` (function)
    The name of a fresh namespace (its default ServiceAccount exists); deleted
    after the test.

Mark tests that use them with ``@pytest.mark.cluster``.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"
CLUSTER_SH = HACK / "cluster.sh"
if str(HACK) not in sys.path:
    sys.path.insert(0, str(HACK))
# Paths and ports come from the launcher's own configuration (KIU_CLUSTER_ID,
# KIU_STATE_DIR, KIU_BIN_DIR are honoured the same way).
_config = importlib.import_module("localcluster.config")
STATE: Path = _config.layout().state
BIN: Path = _config.layout().bin
AGENT_URL: str = _config.AGENT_CONTROL_URL
ZONES: tuple[str, ...] = tuple(_config.ZONES)
ZONE_LABEL = "topology.kubernetes.io/zone"
#: The host's address on the pods' bridge: where pods reach a server a test runs on the host.
BRIDGE_IP: str = _config.BRIDGE_IP
# Cold `up` builds the control plane from source first (see hack/README.md).
UP_TIMEOUT = float(os.environ.get("KIU_UP_TIMEOUT", "5400"))

T = TypeVar("T")


class ClusterError(AssertionError):
    """A harness step failed or timed out; the message says which and why."""


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float = 60.0,
    interval: float = 0.5,
    what: str = "a condition",
) -> T:
    """Poll `predicate` until it returns something truthy and return that.

    Raises ClusterError naming `what` and the last value (or exception) seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # keep polling; report the last failure
            last = e
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


#: kubectl output of a CRD's Established condition status.
ESTABLISHED = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'


class Cluster:
    """Handle on the running local cluster."""

    zones = ZONES

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.bin_dir = BIN
        self.state_dir = STATE
        self.env = dict(os.environ)
        self.env["KUBECONFIG"] = str(kubeconfig)
        self.env["PATH"] = f"{BIN}:{self.env.get('PATH', '/usr/bin:/bin')}"
        self._api: Any = None
        self._stopped: set[str] = set()

    # -- command-line tools ---------------------------------------------------------
    def run(
        self,
        tool: str,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / tool), *args]
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"`{tool} {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against the cluster; raises ClusterError on failure
        unless check=False."""
        return self.run("kubectl", *args, input=input, check=check, timeout=timeout)

    def wait_established(self, crd: str = "projectversions.kiu.dev") -> None:
        """Wait until a CRD is Established. `kubectl wait` fails at once on a CRD created a
        moment ago, whose status.conditions is still null, so the condition is polled."""
        wait_for(
            lambda: (
                self.kubectl("get", "crd", crd, "-o", ESTABLISHED, check=False).stdout == "True"
            ),
            timeout=60,
            what=f"crd/{crd} to be Established",
        )

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, input=input, check=check, timeout=timeout)

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], namespace: str) -> None:
        """kubectl apply a YAML string, an object or a list of objects."""
        if not isinstance(manifest, str):
            items = manifest if isinstance(manifest, list) else [manifest]
            manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)

    # -- API clients ---------------------------------------------------------------------
    def new_api_client(self) -> Any:
        """A new kubernetes.client.ApiClient for this cluster (close it when done)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    @property
    def api(self) -> Any:
        """A shared kubernetes.client.ApiClient, closed at the end of the session."""
        if self._api is None:
            self._api = self.new_api_client()
        return self._api

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api)

    def discovery(self) -> Any:
        from kubernetes import client

        return client.DiscoveryV1Api(self.api)

    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    # -- the node agent: faults and inspection ---------------------------------------------
    def _agent(self, method: str, path: str) -> Any:
        req = urllib.request.Request(
            AGENT_URL + path, method=method, data=b"" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise ClusterError(f"node agent {method} {path}: {e.code} {e.read().decode()}") from e

    def agent_status(self) -> dict[str, Any]:
        """{"zonesDown": [...], "pods": n, "podList": [...]} from the node agent."""
        return dict(self._agent("GET", "/status"))

    def nodes(self, zone: str | None = None, *, simulated: bool = False) -> list[str]:
        """Names of the process nodes (or the simulated ones) of a zone or of all zones."""
        mode = "simulated" if simulated else "process"
        selector = f"kiu.dev/node-mode={mode}" + (f",{ZONE_LABEL}={zone}" if zone else "")
        items = self.core().list_node(label_selector=selector).items
        return sorted(n.metadata.name for n in items)

    def node_ready(self, name: str) -> bool:
        node = self.core().read_node(name)
        ready = next((c for c in node.status.conditions or [] if c.type == "Ready"), None)
        return ready is not None and ready.status == "True"

    def zone_outage(self, zone: str, *, wait: bool = False, timeout: float = 60.0) -> None:
        """Stop heartbeats of every node of `zone` and cut its pods' network.

        The node lifecycle controller marks the nodes NotReady after the grace
        period (8 s) and taints them; pods are evicted 5 s later. wait=True waits
        until every node of the zone is NotReady.
        """
        self._agent("POST", f"/zones/{zone}/outage")
        if wait:
            nodes = self.nodes(zone) + self.nodes(zone, simulated=True)
            wait_for(
                lambda: not any(self.node_ready(n) for n in nodes),
                timeout=timeout,
                what=f"the nodes of {zone} to become NotReady",
            )

    def zone_repair(self, zone: str, *, wait: bool = True, timeout: float = 60.0) -> None:
        """Resume heartbeats; wait=True waits until the zone's nodes are Ready and
        untainted (schedulable). Pods evicted meanwhile are removed for good."""
        self._agent("POST", f"/zones/{zone}/repair")
        if wait:
            nodes = self.nodes(zone) + self.nodes(zone, simulated=True)

            def healthy() -> bool:
                for name in nodes:
                    node = self.core().read_node(name)
                    taints = [
                        t.key
                        for t in node.spec.taints or []
                        if t.key.startswith("node.kubernetes.io/")
                    ]
                    if taints or not self.node_ready(name):
                        return False
                return True

            wait_for(healthy, timeout=timeout, what=f"the nodes of {zone} to be Ready again")

    def kill_pod_process(
        self, namespace: str, name: str, container: str | None = None, signal: str = "KILL"
    ) -> list[int]:
        """Signal a pod's container process(es); returns the pids.

        KILL (unit failure): the container restarts according to the pod's
        restartPolicy. STOP freezes it (it hangs without dying: connections are
        accepted, nothing answers, probes time out); CONT resumes it.
        """
        query = f"?signal={signal}" + (f"&container={container}" if container else "")
        return list(self._agent("POST", f"/pods/{namespace}/{name}/kill{query}")["pids"])

    # -- control plane faults -------------------------------------------------------------
    def stop_component(self, name: str) -> None:
        """Stop one control plane component (e.g. "kube-apiserver"; etcd keeps the
        state); the `cluster` fixture starts it again if the test does not."""
        self._stopped.add(name)
        _checked_cluster_sh("stop", name)

    def start_component(self, name: str) -> None:
        """Start a stopped component again and wait until it is healthy."""
        _checked_cluster_sh("start", name)
        self._stopped.discard(name)

    def restore_components(self) -> None:
        for name in sorted(self._stopped):
            self.start_component(name)

    # -- namespaces ----------------------------------------------------------------------------
    def create_namespace(self, name: str) -> str:
        self.core().create_namespace(
            {"metadata": {"name": name, "labels": {"kiu.dev/test-namespace": "true"}}}
        )
        wait_for(
            lambda: (
                self.core()
                .list_namespaced_service_account(name, field_selector="metadata.name=default")
                .items
            ),
            timeout=60,
            what=f"the default ServiceAccount of namespace {name}",
        )
        return name

    def delete_namespace(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core().delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


# -- process-level bookkeeping of who uses the cluster ----------------------------------------


def _users_dir() -> Path:
    path = STATE / "users"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _other_users() -> list[int]:
    others = []
    for entry in _users_dir().iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            os.kill(int(entry.name), 0)
            others.append(int(entry.name))
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
    return others


def _started_by_tests() -> Path:
    return STATE / "started-by-tests"


def _cluster_sh(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER_SH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def _checked_cluster_sh(*args: str, timeout: float = 180) -> None:
    proc = _cluster_sh(*args, timeout=timeout)
    if proc.returncode != 0:
        raise ClusterError(f"hack/cluster.sh {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")


def start_cluster() -> tuple[Cluster, bool]:
    """Bring the cluster up (or reuse it): (handle, whether this call started it)."""
    was_running = _cluster_sh("status", "--quiet", timeout=60).returncode == 0
    proc = _cluster_sh("up", timeout=UP_TIMEOUT)
    if proc.returncode != 0:
        raise ClusterError(
            f"hack/cluster.sh up failed ({proc.returncode}):\n{proc.stderr[-6000:]}{proc.stdout}"
        )
    match = re.search(r"^KUBECONFIG=(.+)$", proc.stdout, re.MULTILINE)
    if not match:
        raise ClusterError(f"hack/cluster.sh up printed no KUBECONFIG= line:\n{proc.stdout}")
    (_users_dir() / str(os.getpid())).write_text("")
    if not was_running:
        _started_by_tests().write_text(f"{os.getpid()}\n")
    return Cluster(Path(match.group(1).strip())), not was_running


def stop_cluster(cluster: Cluster) -> None:
    """Stop the cluster if a test run started it and no other run still uses it."""
    cluster.close()
    (_users_dir() / str(os.getpid())).unlink(missing_ok=True)
    if os.environ.get("KIU_KEEP_CLUSTER") == "1" or _other_users():
        return
    if not _started_by_tests().exists():
        return
    _started_by_tests().unlink(missing_ok=True)
    proc = _cluster_sh("down", timeout=300)
    if proc.returncode != 0:
        raise ClusterError(f"hack/cluster.sh down failed:\n{proc.stderr}{proc.stdout}")


# -- the fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kiu_cluster() -> Iterator[Cluster]:
    """The local cluster, started once per test run (or reused)."""
    cluster, _ = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="session")
def projectversion_crd(kiu_cluster: Cluster) -> None:
    """The ProjectVersion CRD (crds/), applied and Established, for tests that need it
    without installing the chart."""
    kiu_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kiu_cluster.wait_established()


@pytest.fixture
def cluster(kiu_cluster: Cluster) -> Iterator[Cluster]:
    """The local cluster; components a test left stopped are started and zones it left
    down are repaired afterwards."""
    yield kiu_cluster
    kiu_cluster.restore_components()
    for zone in kiu_cluster.agent_status().get("zonesDown", []):
        kiu_cluster.zone_repair(zone, wait=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@pytest.fixture
def namespace(kiu_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"t-{_slug(request.node.name)[:40].strip('-')}-{uuid.uuid4().hex[:5]}"
    kiu_cluster.create_namespace(name)
    try:
        yield name
    finally:
        kiu_cluster.delete_namespace(name)


@contextmanager
def host_path_claim(cluster: Cluster, namespace: str, *, claim: str, path: Path) -> Iterator[str]:
    """A PersistentVolumeClaim `claim` bound to a PersistentVolume over the host directory
    `path`, as a statically provisioned volume is; yields the volume's name and deletes the
    (cluster-scoped) volume afterwards, the claim going with the namespace."""
    volume = f"{namespace}-{claim}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        namespace,
    )
    try:
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "volumeName": volume,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
            namespace,
        )
        yield volume
    finally:
        cluster.kubectl("delete", "persistentvolume", volume, "--wait=false")
