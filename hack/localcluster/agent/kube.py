"""A small asyncio REST client for the Kubernetes API working on plain dicts.

The agent needs a handful of calls and must stay light on CPU, so it speaks JSON
directly instead of going through generated models.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

Obj = dict[str, Any]

PATCH_TYPES = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}


class ApiError(Exception):
    def __init__(self, status: int, body: str, what: str) -> None:
        self.status = status
        self.body = body
        try:
            self.reason = json.loads(body).get("reason", "")
        except ValueError:
            self.reason = ""
        super().__init__(f"{what}: HTTP {status}: {body[:300]}")


class Kube:
    def __init__(self, server: str, ca: str, cert: str, key: str) -> None:
        self.server = server.rstrip("/")
        self.ssl = ssl.create_default_context(cafile=ca)
        self.ssl.load_cert_chain(cert, key)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl, limit=20),
                timeout=aiohttp.ClientTimeout(total=30, connect=5),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self.session.request(
            method, self.server + path, params=params, data=data, headers=headers
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise ApiError(resp.status, text, f"{method} {path}")
            return json.loads(text) if text else {}

    async def get(self, path: str, **params: str) -> Obj:
        return await self.request("GET", path, params=params or None)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: Obj) -> Obj:
        return await self.request("PUT", path, body=body)

    async def patch(self, path: str, body: Any, kind: str = "strategic") -> Obj:
        return await self.request("PATCH", path, body=body, content_type=PATCH_TYPES[kind])

    async def delete(self, path: str, body: Obj | None = None) -> Obj:
        return await self.request("DELETE", path, body=body)

    async def watch(
        self, path: str, resource_version: str, **params: str
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Yield (type, object) until the server ends the watch; raises ApiError(410)
        when the resource version is too old."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "240",
            **params,
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_read=300, connect=5)
        async with self.session.get(self.server + path, params=query, timeout=timeout) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text(), f"WATCH {path}")
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    raise ApiError(status.get("code", 500), json.dumps(status), f"WATCH {path}")
                yield event["type"], event["object"]


async def retrying(what: str, coro_factory: Any, attempts: int = 5, delay: float = 0.5) -> Any:
    """Retry transient failures (connection errors, 5xx, 429) a few times."""
    for attempt in range(attempts):
        try:
            return await coro_factory()
        except ApiError as e:
            if e.status < 500 and e.status != 429:
                raise
            err: Exception = e
        except (aiohttp.ClientError, TimeoutError) as e:
            err = e
        if attempt == attempts - 1:
            raise err
        await asyncio.sleep(delay * (attempt + 1))
    raise AssertionError(what)
