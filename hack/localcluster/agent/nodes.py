"""Node registration, Lease heartbeats and Ready conditions, zone outages."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import aiohttp

from .. import config
from .kube import ApiError, Kube, Obj

log = logging.getLogger("agent.nodes")

SIM_TAINT = {"key": "kiu.dev/simulated", "value": "true", "effect": "NoSchedule"}


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Nodes:
    def __init__(self, kubes: Mapping[str, Kube], version: str) -> None:
        self.kubes = kubes
        self.version = version
        self.zone: dict[str, str] = {}
        self.sim: set[str] = set()
        for zone in config.ZONES:
            for name in config.node_names(zone):
                self.zone[name] = zone
            for name in config.sim_node_names(zone):
                self.zone[name] = zone
                self.sim.add(name)
        # Pool nodes are simulated nodes with the pool's labels, taints and resources.
        self.pool: dict[str, config.Pool] = {}
        for pool in config.node_pools():
            for zone in pool.zones:
                for name in pool.node_names(zone):
                    self.zone[name] = zone
                    self.sim.add(name)
                    self.pool[name] = pool
        self.down_zones: set[str] = set()
        self._ready_since = {zone: _now() for zone in config.ZONES}
        self.on_change: Callable[[Callable[[str], bool], bool], None] | None = None

    # -- queries --------------------------------------------------------------------
    def is_sim(self, node: str) -> bool:
        return node in self.sim

    def is_down(self, node: str) -> bool:
        return self.zone.get(node) in self.down_zones

    # -- objects ----------------------------------------------------------------------
    def _node(self, name: str) -> Obj:
        zone = self.zone[name]
        sim = name in self.sim
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": zone,
            "topology.kubernetes.io/region": "kiu-local",
            "node.kubernetes.io/instance-type": "kiu-simulated" if sim else "kiu-process",
            "kiu.dev/node-mode": "simulated" if sim else "process",
        }
        pool = self.pool.get(name)
        if pool is not None:
            labels["node.kubernetes.io/instance-type"] = f"kiu-pool-{pool.name}"
            labels["kiu.dev/node-mode"] = "pool"
            labels.update(pool.labels)
            taints = [dict(taint) for taint in pool.taints]
        else:
            taints = [SIM_TAINT] if sim else []
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints} if taints else {},
        }

    def _status(self, name: str) -> Obj:
        sim = name in self.sim
        cap = (
            {"cpu": "1000", "memory": "4000Gi", "pods": "1000", "ephemeral-storage": "1000Gi"}
            if sim
            else {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        )
        pool = self.pool.get(name)
        if pool is not None:
            cap = {**cap, **pool.capacity}
        ts = _now()

        def cond(ctype: str, status: str, reason: str, message: str) -> Obj:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": ts,
                "lastTransitionTime": self._ready_since[self.zone[name]],
            }

        return {
            "capacity": cap,
            "allocatable": cap,
            "addresses": [
                {"type": "InternalIP", "address": config.BRIDGE_IP},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": config.KUBELET_PORT}},
            "nodeInfo": {
                "machineID": name,
                "systemUUID": name,
                "bootID": str(os.getpid()),
                "kernelVersion": platform.release(),
                "osImage": "kiu local node (pods run as host processes)",
                "containerRuntimeVersion": "kiu-simulated://1" if sim else "kiu-process://1",
                "kubeletVersion": self.version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                cond("Ready", "True", "KubeletReady", "kiu node agent is posting ready status"),
            ],
        }

    # -- registration and heartbeats ------------------------------------------------------
    async def register(self) -> None:
        for name in self.zone:
            try:
                await self.kubes[name].create("/api/v1/nodes", self._node(name))
            except ApiError as e:
                if e.status != 409:
                    raise
                # Re-assert our labels on an existing node (its taints are not the
                # kubelet's to change once registered: NodeRestriction).
                body = self._node(name)
                await self.kubes[name].patch(
                    f"/api/v1/nodes/{name}",
                    {"metadata": {"labels": body["metadata"]["labels"]}},
                    "merge",
                )
            await self._post_status(name)
            await self._renew(name)

    async def _post_status(self, name: str) -> None:
        await self.kubes[name].patch(f"/api/v1/nodes/{name}/status", {"status": self._status(name)})

    async def _renew(self, name: str) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": config.LEASE_DURATION_SECONDS,
            "renewTime": _micro_now(),
        }
        try:
            await self.kubes[name].patch(path, {"spec": spec}, "merge")
        except ApiError as e:
            if e.status != 404:
                raise
            await self.kubes[name].create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": spec,
                },
            )

    async def heartbeat(self) -> None:
        """Renew every node's Lease every few seconds and post its status now and
        then, while its zone is up. One loop per node, so a slow request for one
        node never delays another's renewal."""
        await asyncio.gather(*(self._node_loop(name) for name in self.zone))

    async def _node_loop(self, name: str) -> None:
        last_status = time.monotonic()
        while True:
            started = time.monotonic()
            if not self.is_down(name):
                post_status = started - last_status >= config.NODE_STATUS_SECONDS
                try:
                    await asyncio.wait_for(self._renew(name), config.LEASE_RENEW_SECONDS * 2)
                    if post_status:
                        await asyncio.wait_for(self._post_status(name), 10)
                        last_status = started
                except (ApiError, aiohttp.ClientError, TimeoutError) as e:
                    log.warning("heartbeat for %s failed: %s", name, e)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(config.LEASE_RENEW_SECONDS - elapsed, 0.1))

    # -- faults ---------------------------------------------------------------------------
    async def outage(self, zone: str) -> list[str]:
        if zone not in config.ZONES:
            raise KeyError(zone)
        self.down_zones.add(zone)
        if self.on_change:
            self.on_change(lambda n: self.zone.get(n) == zone, False)
        return [n for n, z in self.zone.items() if z == zone]

    async def repair(self, zone: str) -> list[str]:
        if zone not in config.ZONES:
            raise KeyError(zone)
        self.down_zones.discard(zone)
        self._ready_since[zone] = _now()
        names = [n for n, z in self.zone.items() if z == zone]
        # Like a kubelet reconnecting: post Ready and renew at once.
        for name in names:
            try:
                await self._post_status(name)
                await self._renew(name)
            except (ApiError, aiohttp.ClientError, TimeoutError) as e:
                log.warning("repair of %s: %s", name, e)
        if self.on_change:
            self.on_change(lambda n: self.zone.get(n) == zone, True)
        return names
