"""Container probes and lifecycle handlers: HTTP GET, TCP, exec, gRPC, sleep."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import aiohttp

Obj = dict[str, Any]


def resolve_port(port: Any, container: Obj) -> int:
    if isinstance(port, int):
        return port
    if str(port).isdigit():
        return int(port)
    for p in container.get("ports", []) or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"named port {port!r} not found in container {container['name']!r}")


class Prober:
    """Runs one probe attempt; shares an HTTP session across all pods."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False, force_close=True, limit=0),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def run(
        self,
        handler: Obj,
        *,
        pod_ip: str,
        container: Obj,
        pid: int | None,
        env: dict[str, str],
        limit: float,
    ) -> tuple[bool, str]:
        """(success, message) of one attempt of a probe or lifecycle handler,
        given up after `limit` seconds."""
        timeout = limit
        try:
            if "httpGet" in handler:
                return await asyncio.wait_for(
                    self._http(handler["httpGet"], pod_ip, container), timeout
                )
            if "tcpSocket" in handler:
                return await asyncio.wait_for(
                    self._tcp(handler["tcpSocket"], pod_ip, container), timeout
                )
            if "grpc" in handler:
                return await asyncio.wait_for(self._grpc(handler["grpc"], pod_ip), timeout)
            if "exec" in handler:
                return await self._exec(handler["exec"], pid, env, limit)
            if "sleep" in handler:
                await asyncio.sleep(float(handler["sleep"].get("seconds", 0)))
                return True, ""
        except TimeoutError:
            return False, f"timeout after {timeout:g}s"
        except (OSError, aiohttp.ClientError, ValueError) as e:
            return False, f"{type(e).__name__}: {e}"
        return False, f"unsupported handler {sorted(handler)}"

    async def _http(self, spec: Obj, pod_ip: str, container: Obj) -> tuple[bool, str]:
        scheme = spec.get("scheme", "HTTP").lower()
        host = spec.get("host") or pod_ip
        port = resolve_port(spec["port"], container)
        path = spec.get("path", "/")
        if not path.startswith("/"):
            path = "/" + path
        headers = {"User-Agent": "kube-probe/kiu"}
        for h in spec.get("httpHeaders", []) or []:
            headers[h["name"]] = h["value"]
        url = f"{scheme}://{host}:{port}{path}"
        async with self.session.get(url, headers=headers, allow_redirects=False) as resp:
            await resp.content.read(10240)
            ok = 200 <= resp.status < 400
            return ok, f"HTTP probe {url} returned {resp.status}"

    async def _tcp(self, spec: Obj, pod_ip: str, container: Obj) -> tuple[bool, str]:
        host = spec.get("host") or pod_ip
        port = resolve_port(spec["port"], container)
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, ""

    async def _grpc(self, spec: Obj, pod_ip: str) -> tuple[bool, str]:
        import grpc  # only when a pod uses gRPC probes

        service = (spec.get("service") or "").encode()
        request = (b"\n" + bytes([len(service)]) + service) if service else b""
        async with grpc.aio.insecure_channel(f"{pod_ip}:{int(spec['port'])}") as channel:
            call = channel.unary_unary("/grpc.health.v1.Health/Check")
            try:
                reply = await call(request)
            except grpc.aio.AioRpcError as e:
                return False, f"gRPC health check: {e.code().name}"
        # HealthCheckResponse{status = 1 (SERVING)} encodes as 08 01.
        ok = reply == b"\x08\x01"
        return ok, "" if ok else f"gRPC health status bytes {reply!r}"

    async def _exec(
        self, spec: Obj, pid: int | None, env: dict[str, str], limit: float
    ) -> tuple[bool, str]:
        timeout = limit
        if pid is None:
            return False, "container is not running"
        cmd = spec.get("command") or []
        if not cmd:
            return False, "exec probe without a command"
        # Enter the container's network, mount and UTS namespaces.
        argv = ["nsenter", "-t", str(pid), "-n", "-m", "-u", "--", *cmd]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return False, f"command timed out after {timeout:g}s"
        text = out.decode(errors="replace").strip()[-500:]
        return proc.returncode == 0, text or f"exit code {proc.returncode}"
