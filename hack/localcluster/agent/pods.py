"""Pods as local processes: one network namespace per pod, one process per container."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from .. import config, netutil
from . import volumes
from .kube import ApiError, Kube, Obj
from .probes import Prober

if TYPE_CHECKING:
    from .nodes import Nodes

log = logging.getLogger("agent.pods")

BACKOFF_START = 10.0
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 60.0
MISSING_COMMAND_RETRY = 10.0
PODINIT = Path(__file__).with_name("podinit.py")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class IpPool:
    """Round-robin allocation so a freed address is not reused at once."""

    def __init__(self, cidr: str, skip: int = 1) -> None:
        net = ipaddress.ip_network(cidr)
        self._first = int(net.network_address) + 1 + skip
        self._last = int(net.broadcast_address) - 1
        self._next = self._first
        self._used: set[int] = set()

    def allocate(self) -> str:
        size = self._last - self._first + 1
        for _ in range(size):
            cand = self._next
            self._next = self._first if cand >= self._last else cand + 1
            if cand not in self._used:
                self._used.add(cand)
                return str(ipaddress.ip_address(cand))
        raise RuntimeError("pod address range exhausted")

    def release(self, ip: str | None) -> None:
        if ip:
            self._used.discard(int(ipaddress.ip_address(ip)))


@dataclass
class Runtime:
    """What every pod worker shares."""

    kubes: Mapping[str, Kube]
    """The API client of each node: a pod's calls go out as the kubelet of its node."""
    lay: config.Layout
    nodes: Nodes
    prober: Prober
    ca_pem: bytes
    path: str
    ips: IpPool = field(default_factory=lambda: IpPool(config.POD_CIDR))
    sim_ips: IpPool = field(default_factory=lambda: IpPool(config.SIM_POD_CIDR, skip=0))
    workers: dict[str, PodWorker] = field(default_factory=dict)

    def base_env(self, pod: Obj) -> dict[str, str]:
        env = {
            "PATH": self.path,
            "HOME": "/root",
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": config.APISERVER_HOST,
            "KUBERNETES_SERVICE_PORT": str(config.APISERVER_PORT),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(config.APISERVER_PORT),
            "KUBERNETES_PORT": f"tcp://{config.APISERVER_HOST}:{config.APISERVER_PORT}",
        }
        for key in ("LANG", "LC_ALL", "TZ"):
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    def event(
        self,
        pod: Obj,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        container: str | None = None,
    ) -> None:
        meta = pod["metadata"]
        node = pod["spec"]["nodeName"]
        ref: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        }
        if container:
            ref["fieldPath"] = f"spec.containers{{{container}}}"
        ts = now()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": ref,
            "reason": reason,
            "message": message[:1000],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": node},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }

        async def post() -> None:
            with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
                await self.kubes[node].create(
                    f"/api/v1/namespaces/{meta['namespace']}/events", body
                )

        _background(post())


_tasks: set[asyncio.Task[Any]] = set()


def _background(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class ContainerRunner:
    """Runs one container's process, its probes and its restarts."""

    def __init__(self, worker: PodWorker, spec: Obj, *, init: bool = False) -> None:
        self.w = worker
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        self.sidecar = init and spec.get("restartPolicy") == "Always"
        self.restart_count = 0
        self.state: Obj = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: Obj = {}
        self.ready = False
        self.started = False
        self.ran_once = False
        self.exit_code: int | None = None
        self.container_id = ""
        self.proc: asyncio.subprocess.Process | None = None
        self.env: dict[str, str] = {}
        self.stopping = False
        self.done = asyncio.Event()
        self._wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # -- status -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        if self.proc is not None and self.proc.returncode is None:
            return self.proc.pid
        return None

    def status(self) -> Obj:
        st: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            st["containerID"] = self.container_id
        return st

    def _set_state(self, state: Obj) -> None:
        self.state = state
        self.w.changed()
        self.w.wake()

    @property
    def policy(self) -> str:
        pod_policy = self.w.pod["spec"].get("restartPolicy", "Always")
        if self.sidecar:
            return "Always"
        if self.init:
            return "Never" if pod_policy == "Never" else "OnFailure"
        return str(pod_policy)

    # -- running --------------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _resolve(self, env: dict[str, str]) -> tuple[list[str] | None, str]:
        argv = [volumes.expand(str(a), env) for a in (self.spec.get("command") or [])]
        argv += [volumes.expand(str(a), env) for a in (self.spec.get("args") or [])]
        image = self.spec.get("image", "")
        if not argv:
            return None, (
                f'image "{image}": the pod gives no command, and this node runs container '
                "commands as local processes (image entrypoints are not available)"
            )
        exe = argv[0]
        if "/" in exe:
            host_path = self.w.host_path_of(self.spec, exe)
            if host_path is not None and os.access(host_path, os.X_OK):
                return argv, ""
        elif shutil.which(exe, path=env.get("PATH", self.w.rt.path)):
            return argv, ""
        return None, (
            f'image "{image}": command "{exe}" is not installed on this node '
            "(containers run as local processes; the image is not pulled)"
        )

    async def _run(self) -> None:
        backoff = 0.0
        try:
            while not self.stopping:
                try:
                    env = await self.w.env_for(self.spec)
                except volumes.VolumeError as e:
                    self._set_state(
                        {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
                    )
                    await self._sleep(5)
                    continue
                self.env = env
                argv, why = self._resolve(env)
                if argv is None:
                    if self.state.get("waiting", {}).get("reason") != "ErrImagePull":
                        self.w.rt.event(
                            self.w.pod, "Failed", why, warning=True, container=self.name
                        )
                    self._set_state({"waiting": {"reason": "ErrImagePull", "message": why}})
                    await self._sleep(MISSING_COMMAND_RETRY)
                    continue
                t0 = time.monotonic()
                started_at = now()
                try:
                    self.proc = await self.w.spawn(self, argv, env)
                except OSError as e:
                    self._set_state({"waiting": {"reason": "RunContainerError", "message": str(e)}})
                    await self._sleep(5)
                    continue
                self.ran_once = True
                self.container_id = f"kiu-process://{self.w.uid}/{self.name}/{self.restart_count}"
                self.started = not self.spec.get("startupProbe")
                self.ready = False
                self._set_state({"running": {"startedAt": started_at}})
                self.w.rt.event(
                    self.w.pod, "Started", f"Started container {self.name}", container=self.name
                )
                probes = self._start_probes()
                rc = await self.proc.wait()
                for task in probes:
                    task.cancel()
                exit_code = 128 - rc if rc < 0 else rc
                term: Obj = {
                    "exitCode": exit_code,
                    "reason": "Completed" if exit_code == 0 else "Error",
                    "startedAt": started_at,
                    "finishedAt": now(),
                    "containerID": self.container_id,
                }
                if rc < 0:
                    term["signal"] = -rc
                message = self._termination_message(exit_code)
                if message:
                    term["message"] = message
                self.ready = False
                self.started = False
                restart = self.policy == "Always" or (self.policy == "OnFailure" and exit_code != 0)
                if self.stopping or not restart:
                    self.exit_code = exit_code
                    self._set_state({"terminated": term})
                    break
                self.last_state = {"terminated": term}
                if time.monotonic() - t0 >= BACKOFF_RESET_AFTER:
                    backoff = 0.0
                delay, backoff = (
                    backoff,
                    (BACKOFF_START if backoff == 0 else min(backoff * 2, BACKOFF_MAX)),
                )
                if delay:
                    msg = (
                        f"back-off {delay:g}s restarting failed container={self.name} "
                        f"pod={self.w.name}_{self.w.ns}({self.w.uid})"
                    )
                    self._set_state({"waiting": {"reason": "CrashLoopBackOff", "message": msg}})
                    self.w.rt.event(self.w.pod, "BackOff", msg, warning=True, container=self.name)
                    await self._sleep(delay)
                else:
                    self.w.changed()
                if not self.stopping:
                    self.restart_count += 1
        finally:
            self.done.set()
            self.w.wake()

    # -- probes ----------------------------------------------------------------------
    def _termination_message(self, exit_code: int) -> str:
        """What the kubelet reports as the termination message. Processes have no
        /dev/termination-log here, so only FallbackToLogsOnError is honoured: on an error
        exit, the log's last 80 lines, at most 2048 bytes (the kubelet's limits)."""
        if exit_code == 0 or self.spec.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return ""
        try:
            data = self.w.log_path(self.name, self.restart_count).read_bytes()
        except OSError:
            return ""
        tail = b"\n".join(data.rstrip(b"\n").split(b"\n")[-80:])[-2048:]
        return tail.decode(errors="replace")

    def _start_probes(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        tasks = []
        if self.spec.get("startupProbe"):
            tasks.append(loop.create_task(self._probe_loop("startup", tasks)))
        else:
            tasks += self._after_startup()
        return tasks

    def _after_startup(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        tasks = []
        if self.spec.get("readinessProbe"):
            tasks.append(loop.create_task(self._probe_loop("readiness", [])))
        else:
            self.ready = True
            self.w.changed()
        if self.spec.get("livenessProbe"):
            tasks.append(loop.create_task(self._probe_loop("liveness", [])))
        return tasks

    async def _probe_loop(self, kind: str, siblings: list[asyncio.Task[None]]) -> None:
        probe = self.spec[f"{kind}Probe"]
        period = float(probe.get("periodSeconds", 10))
        timeout = float(probe.get("timeoutSeconds", 1))
        failure_threshold = int(probe.get("failureThreshold", 3))
        success_threshold = int(probe.get("successThreshold", 1))
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        successes = failures = 0
        last_msg = ""
        while self.pid is not None:
            if self.w.zone_down():
                await asyncio.sleep(period)
                continue
            ok, msg = await self.w.rt.prober.run(
                probe,
                pod_ip=self.w.pod_ip or "",
                container=self.spec,
                pid=self.pid,
                env=self.env,
                limit=timeout,
            )
            if ok:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
                if msg != last_msg or failures == failure_threshold:
                    self.w.rt.event(
                        self.w.pod,
                        "Unhealthy",
                        f"{kind.title()} probe failed: {msg}",
                        warning=True,
                        container=self.name,
                    )
            last_msg = msg if not ok else ""
            if kind == "startup":
                if ok:
                    self.started = True
                    self.w.changed()
                    self.w.wake()
                    siblings.extend(self._after_startup())
                    return
                if failures >= failure_threshold:
                    await self._kill_for_restart(probe, f"failed startup probe: {msg}")
                    return
            elif kind == "readiness":
                if ok and successes >= success_threshold and not self.ready:
                    self.ready = True
                    self.w.changed()
                elif not ok and failures >= failure_threshold and self.ready:
                    self.ready = False
                    self.w.changed()
            elif failures >= failure_threshold:
                await self._kill_for_restart(probe, f"failed liveness probe: {msg}")
                return
            await asyncio.sleep(period)

    async def _kill_for_restart(self, probe: Obj, why: str) -> None:
        self.w.rt.event(
            self.w.pod,
            "Killing",
            f"Container {self.name} {why}, will be restarted",
            container=self.name,
        )
        grace = probe.get("terminationGracePeriodSeconds")
        if grace is None:
            grace = self.w.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await self._terminate(float(grace))

    # -- stopping -------------------------------------------------------------------
    def signal(self, sig: int) -> int | None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        return pid

    async def _terminate(self, grace: float) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), max(grace, 0.0))
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await proc.wait()

    async def stop(self, deadline: float) -> None:
        """Stop for good: preStop hook, SIGTERM, SIGKILL at the deadline."""
        self.stopping = True
        self._wake.set()
        pre_stop = (self.spec.get("lifecycle") or {}).get("preStop")
        if pre_stop and self.pid is not None:
            remaining = max(deadline - time.monotonic(), 0.0)
            await self.w.rt.prober.run(
                pre_stop,
                pod_ip=self.w.pod_ip or "",
                container=self.spec,
                pid=self.pid,
                env=self.env,
                limit=remaining,
            )
        await self._terminate(max(deadline - time.monotonic(), 0.0))
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=5)


class PodWorker:
    """Everything about one pod bound to one of our nodes."""

    def __init__(self, rt: Runtime, pod: Obj) -> None:
        self.rt = rt
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.ns: str = meta["namespace"]
        self.name: str = meta["name"]
        self.node: str = pod["spec"]["nodeName"]
        self.kube = rt.kubes[self.node]
        self.sim = rt.nodes.is_sim(self.node)
        self.dir = rt.lay.pods / f"{self.ns}_{self.name}_{self.uid}"
        self.pod_ip: str | None = None
        self.start_time: str | None = None
        self.sandbox_ready = False
        self.sandbox_message = ""
        self.init_runners: list[ContainerRunner] = []
        self.runners: list[ContainerRunner] = []
        self.phase_override: str | None = None
        self.gone = False
        self.finished = False
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()
        self._last_sent: Obj | None = None
        self._cond_times: dict[str, tuple[str, str]] = {}
        self._materialised: volumes.Materialised | None = None
        self._resolver = volumes.Resolver(self.kube, self.ns)
        self._env_cache: dict[str, dict[str, str]] = {}
        self._aux: list[asyncio.Task[Any]] = []
        self._sandbox_removed = False
        self._netns_ready = False
        self.task: asyncio.Task[None] | None = None

    # -- notifications ------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._main())

    def wake(self) -> None:
        self._wake.set()

    def changed(self) -> None:
        self._dirty.set()

    def update(self, pod: Obj) -> None:
        self.pod = pod
        if self._last_sent is not None and not self._matches(pod.get("status", {})):
            self._last_sent = None
            self.changed()
        self.wake()

    def deleted(self) -> None:
        self.gone = True
        self.wake()

    def zone_down(self) -> bool:
        return self.rt.nodes.is_down(self.node)

    @property
    def terminating(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def _matches(self, current: Obj) -> bool:
        sent = self._last_sent or {}
        if current.get("phase") != sent.get("phase") or current.get("podIP") != sent.get("podIP"):
            return False
        have = {c["type"]: c["status"] for c in current.get("conditions", [])}
        return all(have.get(c["type"]) == c["status"] for c in sent.get("conditions", []))

    async def _wait(self, seconds: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _wait_zone_up(self) -> None:
        while self.zone_down() and not self.gone:
            await self._wait()

    # -- main flow --------------------------------------------------------------------
    async def _main(self) -> None:
        status_task = asyncio.get_running_loop().create_task(self._status_loop())
        try:
            await self._wait_zone_up()
            phase = self.pod.get("status", {}).get("phase")
            if self.gone:
                return
            if self.terminating or phase in ("Succeeded", "Failed"):
                # Deleted before it ran, or finished before this agent started.
                self.finished = phase in ("Succeeded", "Failed")
                await self._finish()
                return
            self.start_time = now()
            if self.sim:
                await self._run_simulated()
            else:
                await self._run_processes()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s: worker failed", self.ns, self.name)
        finally:
            status_task.cancel()
            for task in self._aux:
                task.cancel()
            await self._kill_all()
            self._release()
            self.rt.workers.pop(self.uid, None)

    async def _finish(self) -> None:
        """Wait until the pod is deleted (after it terminated), then remove it."""
        while not self.gone:
            if self.terminating and not self.zone_down():
                await self._final_delete()
                return
            await self._wait()

    async def _run_simulated(self) -> None:
        self.pod_ip = self.rt.sim_ips.allocate()
        self.sandbox_ready = True
        for spec in self.pod["spec"]["containers"]:
            runner = ContainerRunner(self, spec)
            runner.state = {"running": {"startedAt": now()}}
            runner.ready = runner.started = runner.ran_once = True
            runner.container_id = f"kiu-simulated://{self.uid}/{spec['name']}"
            self.runners.append(runner)
        self.changed()
        await self._finish()

    async def _run_processes(self) -> None:
        while not await self._setup_sandbox():
            if self.gone or self.terminating:
                await self._finish()
                return
            await self._wait(5)
        self.changed()
        ok = await self._run_init_containers()
        if ok:
            for spec in self.pod["spec"]["containers"]:
                runner = ContainerRunner(self, spec)
                self.runners.append(runner)
                runner.start()
        self.changed()
        while True:
            if self.gone:
                return
            if self.terminating and not self.zone_down():
                await self._terminate()
                await self._final_delete()
                return
            if not self.finished and self.runners and all(r.done.is_set() for r in self.runners):
                await self._stop_sidecars()
                self.finished = True
                self.changed()
            await self._wait()

    async def _run_init_containers(self) -> bool:
        for spec in self.pod["spec"].get("initContainers", []) or []:
            runner = ContainerRunner(self, spec, init=True)
            self.init_runners.append(runner)
            runner.start()
            self.changed()
            while True:
                if self.gone or (self.terminating and not self.zone_down()):
                    return False
                if runner.sidecar and runner.started:
                    break
                if runner.done.is_set():
                    break
                await self._wait()
            if runner.sidecar:
                continue
            if runner.exit_code != 0:
                self.phase_override = "Failed"
                self.finished = True
                self.changed()
                return False
        return True

    async def _setup_sandbox(self) -> bool:
        try:
            if not self._netns_ready:
                if self.pod_ip is None:
                    self.pod_ip = self.rt.ips.allocate()
                await asyncio.to_thread(netutil.pod_netns_up, self.uid, self.pod_ip)
                self._netns_ready = True
                if self.zone_down():
                    netutil.pod_link(self.uid, up=False)
            (self.dir / "logs").mkdir(parents=True, exist_ok=True)
            self._write_etc()
            self._materialised = await volumes.materialise(
                self.kube, self._view(), self.dir, self.rt.ca_pem, self._resolver
            )
        except (volumes.VolumeError, RuntimeError, OSError, ApiError) as e:
            msg = f"MountVolume.SetUp failed: {e}"
            if msg != self.sandbox_message:
                self.rt.event(self.pod, "FailedMount", msg, warning=True)
            self.sandbox_message = msg
            self._resolver = volumes.Resolver(self.kube, self.ns)
            self.changed()
            return False
        self.sandbox_ready = True
        self.sandbox_message = ""
        if self._materialised.tokens:
            self._aux.append(asyncio.get_running_loop().create_task(self._refresh_tokens()))
        return True

    def _write_etc(self) -> None:
        hostname = self.name[:63]
        (self.dir / "hosts").write_text(
            "# Kubernetes-managed hosts file (kiu node agent).\n"
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{self.pod_ip}\t{hostname}\n"
        )
        search = f"{self.ns}.svc.cluster.local svc.cluster.local cluster.local"
        (self.dir / "resolv.conf").write_text(
            f"nameserver {config.BRIDGE_IP}\nsearch {search}\n"
            "options ndots:1 timeout:1 attempts:1\n"
        )

    async def _refresh_tokens(self) -> None:
        assert self._materialised is not None
        shortest = min(exp for *_, exp in self._materialised.tokens)
        while True:
            await asyncio.sleep(max(shortest * 0.8, 60.0))
            for base, rel, aud, exp in self._materialised.tokens:
                with contextlib.suppress(volumes.VolumeError, ApiError, aiohttp.ClientError):
                    token = await volumes.request_token(self.kube, self.pod, aud, exp)
                    volumes._write(base, rel, token.encode(), 0o644)

    def _view(self) -> Obj:
        """The pod as the downward API sees it: with the addresses we assigned."""
        status = dict(self.pod.get("status") or {})
        status["hostIP"] = config.BRIDGE_IP
        status["hostIPs"] = [{"ip": config.BRIDGE_IP}]
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        return {**self.pod, "status": status}

    async def env_for(self, spec: Obj) -> dict[str, str]:
        return await volumes.container_env(
            self._view(), spec, self.rt.base_env(self.pod), self._resolver
        )

    def host_path_of(self, spec: Obj, path: str) -> str | None:
        """Where a path inside the container lives on the host (volume mounts)."""
        mats = self._materialised.paths if self._materialised else {}
        best = None
        for m in spec.get("volumeMounts", []) or []:
            mp = m["mountPath"].rstrip("/")
            inside = path == mp or path.startswith(mp + "/")
            if inside and m["name"] in mats and (best is None or len(mp) > len(best[0])):
                src = mats[m["name"]] / (m.get("subPath") or "")
                best = (mp, str(src) + path[len(mp) :])
        return best[1] if best else path

    def _launch_spec(self, spec: Obj) -> Path:
        """The container's mounts, hostname and workingDir, for podinit.py."""
        mats = self._materialised.paths if self._materialised else {}
        ro_vols = self._materialised.read_only if self._materialised else set()
        # As kubelet does: the pod's own /etc/hosts, and a resolver that fails
        # fast (there is no cluster DNS; the host's may be unreachable).
        mounts: list[Obj] = [
            {"src": str(self.dir / "hosts"), "dst": "/etc/hosts"},
            {"src": str(self.dir / "resolv.conf"), "dst": "/etc/resolv.conf"},
        ]
        for m in spec.get("volumeMounts", []) or []:
            if m["name"] not in mats:
                raise volumes.VolumeError(f"volumeMount {m['name']!r}: no such volume")
            src = mats[m["name"]]
            if m.get("subPath"):
                src = src / m["subPath"]
                if not src.exists():
                    src.mkdir(parents=True)
            ro = bool(m.get("readOnly")) or m["name"] in ro_vols
            mounts.append({"src": str(src), "dst": m["mountPath"], "readOnly": ro})
        mounts += self._host_paths_kept(mounts)
        launch = {
            "hostname": self.name[:63],
            "mounts": mounts,
            "workingDir": spec.get("workingDir") or "",
        }
        path = self.dir / f"launch-{spec['name']}.json"
        path.write_text(json.dumps(launch, indent=1))
        return path

    def _host_paths_kept(self, mounts: list[Obj]) -> list[Obj]:
        """Bind the host's programs back over volumes that would hide them.

        Containers here run host programs: an emptyDir at /tmp must not hide a
        checkout (and its virtualenv) that happens to live under /tmp.
        """
        needed = {config.REPO, Path(sys.prefix), Path(sys.base_prefix)}
        needed |= {Path(p) for p in self.rt.path.split(":") if p.startswith("/")}
        kept = []
        for host in sorted(str(p) for p in needed if p.exists()):
            hidden = any(
                host == m["dst"].rstrip("/") or host.startswith(m["dst"].rstrip("/") + "/")
                for m in mounts
            )
            if hidden:
                kept.append({"src": host, "dst": host, "readOnly": True})
        return kept

    def log_path(self, container: str, restart: int) -> Path:
        return self.dir / "logs" / container / f"{restart}.log"

    async def spawn(
        self, runner: ContainerRunner, argv: list[str], env: dict[str, str]
    ) -> asyncio.subprocess.Process:
        try:
            launch = self._launch_spec(runner.spec)
        except volumes.VolumeError as e:
            raise OSError(str(e)) from e
        logfile = self.log_path(runner.name, runner.restart_count)
        logfile.parent.mkdir(parents=True, exist_ok=True)
        full = [
            "ip", "netns", "exec", netutil.netns_name(self.uid),
            "unshare", "--uts", "--", sys.executable, "-I", "-S", str(PODINIT), str(launch),
            *argv,
        ]  # fmt: skip
        with logfile.open("ab") as out:
            return await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=self.dir,
                start_new_session=True,
            )

    # -- stopping -----------------------------------------------------------------------
    def _all_runners(self) -> list[ContainerRunner]:
        return self.runners + self.init_runners

    async def _stop_sidecars(self) -> None:
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        deadline = time.monotonic() + grace
        await asyncio.gather(*(r.stop(deadline) for r in self.init_runners if r.sidecar))

    async def _terminate(self) -> None:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        deadline = time.monotonic() + float(grace)
        if any(r.pid for r in self._all_runners()):
            self.rt.event(self.pod, "Killing", "Stopping the pod's containers")
        await asyncio.gather(*(r.stop(deadline) for r in self.runners))
        await asyncio.gather(*(r.stop(deadline) for r in self.init_runners))

    async def _kill_all(self) -> None:
        for runner in self._all_runners():
            runner.stopping = True
            runner.signal(signal.SIGKILL)
            if runner.task is not None:
                runner.task.cancel()
        if self.pod_ip and not self.sim and not self._sandbox_removed:
            self._sandbox_removed = True
            await asyncio.to_thread(netutil.pod_netns_down, self.uid)

    def _release(self) -> None:
        if self.sim:
            self.rt.sim_ips.release(self.pod_ip)
        else:
            self.rt.ips.release(self.pod_ip)
            shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    async def _final_delete(self) -> None:
        """What kubelet does once the containers are gone: delete with grace 0
        (after removing the sandbox, so a deleted pod leaves nothing behind)."""
        await self._kill_all()
        path = f"/api/v1/namespaces/{self.ns}/pods/{self.name}"
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        for _ in range(10):
            try:
                await self.kube.delete(path, body)
                return
            except ApiError as e:
                if e.status in (404, 409):
                    return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(1)

    def kill_process(self, container: str | None, sig: int) -> list[int]:
        pids = []
        for runner in self._all_runners():
            if container in (None, runner.name):
                pid = runner.signal(sig)
                if pid:
                    pids.append(pid)
        return pids

    # -- status -------------------------------------------------------------------------
    def _condition(self, ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        prev = self._cond_times.get(ctype)
        if prev is None or prev[0] != status:
            self._cond_times[ctype] = (status, now())
        cond: Obj = {
            "type": ctype,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._cond_times[ctype][1],
        }
        if not ok and reason:
            cond["reason"] = reason
            if message:
                cond["message"] = message
        return cond

    def _waiting_status(self, spec: Obj, reason: str) -> Obj:
        waiting: Obj = {"reason": reason}
        if self.sandbox_message and reason == "ContainerCreating":
            waiting["message"] = self.sandbox_message
        return {
            "name": spec["name"],
            "image": spec.get("image", ""),
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": waiting},
            "lastState": {},
        }

    def build_status(self) -> Obj:
        spec = self.pod["spec"]
        inits = spec.get("initContainers", []) or []
        have_init = {r.name: r for r in self.init_runners}
        have_main = {r.name: r for r in self.runners}
        first_wait = "PodInitializing" if self.sandbox_ready else "ContainerCreating"
        init_statuses = [
            have_init[c["name"]].status()
            if c["name"] in have_init
            else self._waiting_status(c, first_wait)
            for c in inits
        ]
        main_wait = "PodInitializing" if inits and self.sandbox_ready else "ContainerCreating"
        statuses = [
            have_main[c["name"]].status()
            if c["name"] in have_main
            else self._waiting_status(c, main_wait)
            for c in spec["containers"]
        ]
        initialized = all(
            (r := have_init.get(c["name"])) is not None
            and ((r.sidecar and r.started) or r.exit_code == 0)
            for c in inits
        )
        not_ready = [s["name"] for s in statuses if not s["ready"]]
        containers_ready = not not_ready and bool(self.runners)
        gates = [g["conditionType"] for g in spec.get("readinessGates", []) or []]
        current = {c["type"]: c["status"] for c in self.pod.get("status", {}).get("conditions", [])}
        gates_ok = all(current.get(g) == "True" for g in gates)
        phase = self._phase()
        unready_msg = f"containers with unready status: [{' '.join(not_ready)}]"
        conditions = [
            self._condition("PodReadyToStartContainers", self.sandbox_ready),
            self._condition(
                "Initialized",
                initialized,
                "ContainersNotInitialized",
                "containers with incomplete status: "
                f"[{' '.join(c['name'] for c in inits if c['name'] not in have_init)}]",
            ),
            self._condition("ContainersReady", containers_ready, "ContainersNotReady", unready_msg),
            self._condition(
                "Ready",
                containers_ready and gates_ok,
                "ContainersNotReady" if not containers_ready else "ReadinessGatesNotReady",
                unready_msg,
            ),
        ]
        if phase in ("Succeeded", "Failed"):
            conditions[2] = self._condition("ContainersReady", False, "PodCompleted")
            conditions[3] = self._condition("Ready", False, "PodCompleted")
        host_ip = config.BRIDGE_IP
        status: Obj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
        }
        if inits:
            status["initContainerStatuses"] = init_statuses
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        return status

    def _phase(self) -> str:
        if self.phase_override:
            return self.phase_override
        if not self.runners:
            return "Pending"
        if all(r.done.is_set() for r in self.runners):
            return "Succeeded" if all(r.exit_code == 0 for r in self.runners) else "Failed"
        if any(r.ran_once for r in self.runners):
            return "Running"
        return "Pending"

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.05)
            self._dirty.clear()
            if self.gone:
                return
            if self.zone_down():
                continue
            status = self.build_status()
            if status == self._last_sent:
                continue
            path = f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status"
            try:
                await self.kube.patch(path, {"status": status})
                self._last_sent = status
            except ApiError as e:
                if e.status == 404:
                    return
                log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, e)
                await asyncio.sleep(1)
                self.changed()
            except (aiohttp.ClientError, TimeoutError) as e:
                log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, e)
                await asyncio.sleep(1)
                self.changed()


class Pods:
    """Watches the pods bound to each of our nodes and keeps one worker per pod."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _apply(self, etype: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.rt.workers.get(uid)
        if etype == "DELETED":
            if worker is not None:
                worker.deleted()
            return
        if worker is not None:
            worker.update(pod)
        else:
            worker = PodWorker(self.rt, pod)
            self.rt.workers[uid] = worker
            worker.start()

    async def run(self) -> None:
        await asyncio.gather(*(self._watch(node, kube) for node, kube in self.rt.kubes.items()))

    async def _watch(self, node: str, kube: Kube) -> None:
        """List and watch one node's pods as that node: the Node authorizer lets a kubelet
        list and watch only the pods whose spec.nodeName is its own."""
        params = {"fieldSelector": f"spec.nodeName={node}"}
        while True:
            try:
                listing = await kube.get("/api/v1/pods", **params)
                seen = set()
                for pod in listing["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self._apply("MODIFIED", pod)
                for uid, worker in list(self.rt.workers.items()):
                    if worker.node == node and uid not in seen:
                        worker.deleted()
                rv = listing["metadata"]["resourceVersion"]
                while True:
                    async for etype, obj in kube.watch("/api/v1/pods", rv, **params):
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if etype != "BOOKMARK":
                            self._apply(etype, obj)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status != 410:
                    log.warning("pod watch of %s: %s", node, e)
                    await asyncio.sleep(1)
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                log.warning("pod watch of %s: %s", node, e)
                await asyncio.sleep(1)

    def find(self, namespace: str, name: str) -> PodWorker | None:
        for worker in self.rt.workers.values():
            if worker.ns == namespace and worker.name == name:
                return worker
        return None

    def on_zone_change(self, nodes: Callable[[str], bool], up: bool) -> None:
        for worker in list(self.rt.workers.values()):
            if nodes(worker.node):
                if not worker.sim and worker.pod_ip:
                    netutil.pod_link(worker.uid, up=up)
                worker.changed()
                worker.wake()

    async def shutdown(self) -> None:
        """Agent exit: kill every pod process at once and remove the netns."""
        workers = list(self.rt.workers.values())
        for worker in workers:
            if worker.task is not None:
                worker.task.cancel()
        for worker in workers:
            for runner in worker._all_runners():
                runner.signal(signal.SIGKILL)
            if worker.pod_ip and not worker.sim:
                netutil.pod_netns_down(worker.uid)
