"""Paths, addresses and ports of the local cluster (one place)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

HACK = Path(__file__).resolve().parent.parent
REPO = HACK.parent


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).resolve() if value else default


@dataclass(frozen=True)
class Layout:
    """Where the cluster keeps its state; everything lives under one ignored folder."""

    state: Path
    bin: Path

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def pods(self) -> Path:
        return self.state / "pods"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def users(self) -> Path:
        return self.state / "users"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def component_kubeconfig(self, name: str) -> Path:
        return self.config / f"{name}.kubeconfig"


# KIU_CLUSTER_ID=<n> (1-5) runs an extra, independent cluster next to the default
# one (0): its own state folder, ports, bridge and pod range, no kube-proxy.
CLUSTER_ID = int(os.environ.get("KIU_CLUSTER_ID", "0"))
if not 0 <= CLUSTER_ID <= 5:
    raise SystemExit("KIU_CLUSTER_ID must be between 0 and 5")


def default_state_dir() -> Path:
    if CLUSTER_ID == 0:
        return REPO / ".kiu"
    return HACK / ".cache" / f"cluster-{CLUSTER_ID}"


def layout() -> Layout:
    return Layout(
        state=_env_path("KIU_STATE_DIR", default_state_dir()),
        bin=_env_path("KIU_BIN_DIR", HACK / ".cache" / "bin"),
    )


# The pod network: a bridge on the host with the first address of the pod range.
BRIDGE = f"kiu{CLUSTER_ID}"
POD_CIDR = f"10.{244 + CLUSTER_ID}.0.0/16"
BRIDGE_IP = f"10.{244 + CLUSTER_ID}.0.1"
# Pods on simulated nodes get addresses from here (never routed).
SIM_POD_CIDR = f"10.{250 + CLUSTER_ID}.0.0/16"
POD_PREFIX_LEN = 16
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
# Netns and veth names the agent owns (cleanup sweeps these prefixes).
NETNS_PREFIX = "kiu-" if CLUSTER_ID == 0 else f"kiu{CLUSTER_ID}-"
VETH_PREFIX = "kiuv" if CLUSTER_ID == 0 else f"kiu{CLUSTER_ID}v"

# Control plane endpoints. The API server listens on the bridge address, which
# is local to the host (tests, the gateway) and reachable from every pod netns.
APISERVER_HOST = BRIDGE_IP
APISERVER_PORT = 6443
APISERVER_URL = f"https://{APISERVER_HOST}:{APISERVER_PORT}"
ETCD_CLIENT_PORT = 12379 + 10 * CLUSTER_ID
ETCD_PEER_PORT = 12380 + 10 * CLUSTER_ID
CONTROLLER_MANAGER_PORT = 10257 + 1000 * CLUSTER_ID
SCHEDULER_PORT = 10259 + 1000 * CLUSTER_ID
KUBE_PROXY_HEALTHZ_PORT = 10256
KUBE_PROXY_METRICS_PORT = 10249
# The agent: its fault-injection control channel (loopback) and the kubelet API
# the API server calls for `kubectl logs` (on the node address).
AGENT_CONTROL_PORT = 10260 + 1000 * CLUSTER_ID
AGENT_CONTROL_URL = f"http://127.0.0.1:{AGENT_CONTROL_PORT}"
KUBELET_PORT = 10250

ZONES = ("zone-a", "zone-b", "zone-c")
NODES_PER_ZONE = int(os.environ.get("KIU_NODES_PER_ZONE", "2"))
SIM_NODES_PER_ZONE = int(os.environ.get("KIU_SIM_NODES_PER_ZONE", "1"))

# Failure detection tuned so outage tests run in seconds.
LEASE_DURATION_SECONDS = 10
LEASE_RENEW_SECONDS = 2.0
NODE_STATUS_SECONDS = 10.0
NODE_MONITOR_GRACE_PERIOD = "8s"
NODE_MONITOR_PERIOD = "2s"
TOLERATION_SECONDS = 5


def node_names(zone: str, count: int = NODES_PER_ZONE) -> list[str]:
    return [f"kiu-{zone}-{i}" for i in range(1, count + 1)]


def sim_node_names(zone: str, count: int = SIM_NODES_PER_ZONE) -> list[str]:
    return [f"kiu-sim-{zone}-{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class Pool:
    """Simulated nodes with their own labels, taints and extended resources, in some zones."""

    name: str
    zones: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    capacity: dict[str, str] = field(default_factory=dict)
    """Added to a simulated node's capacity, e.g. {"nvidia.com/gpu": "2"}."""
    nodes_per_zone: int = 1

    def node_names(self, zone: str) -> list[str]:
        if zone not in self.zones:
            return []
        return [f"kiu-{self.name}-{zone}-{i}" for i in range(1, self.nodes_per_zone + 1)]


def node_pools() -> tuple[Pool, ...]:
    """The pools of `KIU_NODE_POOLS` (a JSON file; `none`: no pool), else hack/nodepools.json."""
    value = os.environ.get("KIU_NODE_POOLS", "")
    if value == "none":
        return ()
    data = json.loads(Path(value or HACK / "nodepools.json").read_text())
    pools = tuple(
        Pool(
            name=pool["name"],
            zones=tuple(pool["zones"]),
            labels=dict(pool.get("labels") or {}),
            taints=tuple(pool.get("taints") or ()),
            capacity={k: str(v) for k, v in (pool.get("capacity") or {}).items()},
            nodes_per_zone=int(pool.get("nodesPerZone", 1)),
        )
        for pool in data["pools"]
    )
    unknown = {zone for pool in pools for zone in pool.zones} - set(ZONES)
    if unknown:
        raise SystemExit(f"node pools: unknown zones {sorted(unknown)} (zones are {ZONES})")
    return pools


def all_node_names() -> set[str]:
    """Every node the agent registers: process, simulated and pool nodes."""
    names = {n for z in ZONES for n in node_names(z) + sim_node_names(z)}
    return names | {n for pool in node_pools() for z in ZONES for n in pool.node_names(z)}


def kubernetes_version() -> str:
    for line in (HACK / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.split("=", 1)[1].strip()
    return "v0.0.0"
