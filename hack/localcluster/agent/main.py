"""The node agent process: nodes, pods, the fault-injection channel, the kubelet API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from .. import config, netutil
from ..pki import KUBELET_CLIENT, node_client
from .kube import ApiError, Kube
from .nodes import Nodes
from .pods import Pods, PodWorker, Runtime
from .probes import Prober

log = logging.getLogger("agent")

# STOP freezes a container (it hangs without dying: connections are accepted, nothing
# answers); CONT resumes it.
SIGNALS = {
    "KILL": signal.SIGKILL,
    "TERM": signal.SIGTERM,
    "INT": signal.SIGINT,
    "STOP": signal.SIGSTOP,
    "CONT": signal.SIGCONT,
}


def _node_kube(pki: Path, node: str) -> Kube:
    stem = node_client(node).stem
    return Kube(
        config.APISERVER_URL,
        str(pki / "ca.crt"),
        str(pki / f"{stem}.crt"),
        str(pki / f"{stem}.key"),
    )


class Agent:
    def __init__(self, lay: config.Layout) -> None:
        self.lay = lay
        pki = lay.pki
        # Every node speaks with its own kubelet identity (system:node:<name>), so the Node
        # authorizer and NodeRestriction hold the agent to what each kubelet may do.
        self.kubes = {name: _node_kube(pki, name) for name in sorted(config.all_node_names())}
        self.nodes = Nodes(self.kubes, config.kubernetes_version())
        self.rt = Runtime(
            kubes=self.kubes,
            lay=lay,
            nodes=self.nodes,
            prober=Prober(),
            ca_pem=(pki / "ca.crt").read_bytes(),
            path=os.environ.get("PATH", "/usr/bin:/bin"),
        )
        self.pods = Pods(self.rt)
        self.nodes.on_change = self.pods.on_zone_change
        self.stop = asyncio.Event()

    # -- fault injection channel (loopback HTTP) ----------------------------------------
    def control_app(self) -> web.Application:
        app = web.Application()
        routes = web.RouteTableDef()

        @routes.get("/healthz")
        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        @routes.get("/status")
        async def status(_: web.Request) -> web.Response:
            pods = [
                {
                    "namespace": w.ns,
                    "name": w.name,
                    "node": w.node,
                    "podIP": w.pod_ip,
                    "simulated": w.sim,
                    "containers": {r.name: r.pid for r in w.runners},
                }
                for w in self.rt.workers.values()
            ]
            return web.json_response(
                {
                    "zonesDown": sorted(self.nodes.down_zones),
                    "pods": sum(1 for p in pods if not p["simulated"]),
                    "podList": pods,
                }
            )

        @routes.post("/zones/{zone}/outage")
        async def outage(req: web.Request) -> web.Response:
            zone = req.match_info["zone"]
            try:
                nodes = await self.nodes.outage(zone)
            except KeyError:
                raise web.HTTPNotFound(text=f"unknown zone {zone!r}") from None
            log.info("zone outage: %s (%s)", zone, ", ".join(nodes))
            return web.json_response({"zone": zone, "nodes": nodes, "down": True})

        @routes.post("/zones/{zone}/repair")
        async def repair(req: web.Request) -> web.Response:
            zone = req.match_info["zone"]
            try:
                nodes = await self.nodes.repair(zone)
            except KeyError:
                raise web.HTTPNotFound(text=f"unknown zone {zone!r}") from None
            log.info("zone repaired: %s", zone)
            return web.json_response({"zone": zone, "nodes": nodes, "down": False})

        @routes.post("/pods/{namespace}/{name}/kill")
        async def kill(req: web.Request) -> web.Response:
            ns, name = req.match_info["namespace"], req.match_info["name"]
            worker = self.pods.find(ns, name)
            if worker is None:
                raise web.HTTPNotFound(text=f"pod {ns}/{name} is not running on this agent")
            sig = SIGNALS.get(req.query.get("signal", "KILL").upper().removeprefix("SIG"))
            if sig is None:
                raise web.HTTPBadRequest(text=f"signal must be one of {', '.join(SIGNALS)}")
            pids = worker.kill_process(req.query.get("container"), sig)
            if not pids:
                raise web.HTTPConflict(text=f"pod {ns}/{name} has no running process")
            log.info("signalled %s/%s processes %s with %s", ns, name, pids, sig.name)
            return web.json_response({"pids": pids, "signal": sig.name})

        app.add_routes(routes)
        return app

    # -- the kubelet API subset the API server calls (kubectl logs) ------------------------
    def kubelet_app(self) -> web.Application:
        @web.middleware
        async def api_server_only(req: web.Request, handler: Handler) -> web.StreamResponse:
            """As a kubelet authorizes its callers: here only the API server may read logs
            (pods reach this address too)."""
            cert = req.transport.get_extra_info("peercert") if req.transport else None
            subject = dict(rdn[0] for rdn in (cert or {}).get("subject", ()))
            if subject.get("commonName") != KUBELET_CLIENT.cn:
                raise web.HTTPForbidden(text="only the API server may call the kubelet API")
            return await handler(req)

        app = web.Application(middlewares=[api_server_only])

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def container_logs(req: web.Request) -> web.StreamResponse:
            ns, pod, container = (req.match_info[k] for k in ("namespace", "pod", "container"))
            worker = self.pods.find(ns, pod)
            if worker is None:
                raise web.HTTPNotFound(text=f"pod {ns}/{pod} not found on this node")
            runner = next((r for r in worker._all_runners() if r.name == container), None)
            if runner is None:
                raise web.HTTPNotFound(text=f"container {container!r} not found in {ns}/{pod}")
            restart = runner.restart_count
            if req.query.get("previous") in ("true", "1"):
                restart -= 1
                if restart < 0:
                    raise web.HTTPBadRequest(
                        text=f"previous terminated container {container!r} not found"
                    )
            return await _serve_log(req, worker, runner.name, restart)

        async def unsupported(req: web.Request) -> web.Response:
            raise web.HTTPNotImplemented(
                text=f"{req.path}: the kiu process runtime supports only containerLogs"
            )

        app.router.add_get("/healthz", healthz)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
        app.router.add_route("*", "/{tail:.*}", unsupported)
        return app

    # -- lifecycle -----------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        netutil.bridge_up()
        # Leftovers of an earlier agent (crash) would clash with new pods.
        netutil.cleanup_pods_only()
        for attempt in range(60):
            try:
                await self.nodes.register()
                break
            except (ApiError, OSError) as e:
                if attempt == 59:
                    raise
                log.info("waiting for the API server: %s", e)
                await asyncio.sleep(1)
        log.info("registered nodes: %s", ", ".join(self.nodes.zone))
        runners = []
        control = web.AppRunner(self.control_app(), access_log=None)
        kubelet = web.AppRunner(self.kubelet_app(), access_log=None)
        for r in (control, kubelet):
            await r.setup()
            runners.append(r)
        await web.TCPSite(control, "127.0.0.1", config.AGENT_CONTROL_PORT).start()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(str(self.lay.pki / "kubelet.crt"), str(self.lay.pki / "kubelet.key"))
        tls.load_verify_locations(str(self.lay.pki / "ca.crt"))
        tls.verify_mode = ssl.CERT_REQUIRED
        await web.TCPSite(kubelet, config.BRIDGE_IP, config.KUBELET_PORT, ssl_context=tls).start()
        tasks = [
            loop.create_task(self.nodes.heartbeat()),
            loop.create_task(self.pods.run()),
        ]
        await self.stop.wait()
        log.info("stopping: killing every pod process")
        for task in tasks:
            task.cancel()
        await self.pods.shutdown()
        for r in runners:
            await r.cleanup()
        await self.rt.prober.close()
        for kube in self.kubes.values():
            await kube.close()


async def _serve_log(
    req: web.Request, worker: PodWorker, container: str, restart: int
) -> web.StreamResponse:
    path: Path = worker.log_path(container, restart)
    follow = req.query.get("follow") in ("true", "1")
    tail = req.query.get("tailLines")
    limit = req.query.get("limitBytes")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(req)
    data = _read(path)
    if tail is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-int(tail) :]) if int(tail) > 0 else b""
    if limit is not None:
        data = data[: int(limit)]
    await resp.write(data)
    if follow:
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:  # noqa: ASYNC230
            f.seek(0, os.SEEK_END)
            while not worker.gone and req.transport is not None and not req.transport.is_closing():
                chunk = f.read(65536)
                if chunk:
                    await resp.write(chunk)
                else:
                    await asyncio.sleep(0.5)
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def run(lay: config.Layout) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    asyncio.run(Agent(lay).run())
    return 0
