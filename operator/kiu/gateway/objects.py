"""Images named by ``Image.S3Object``: GET from an S3-compatible object store.

Path-style requests (``<endpoint>/<bucket>/<key>[?versionId=]``) signed with
:mod:`kiu.sigv4` (service ``s3``), over one pooled aiohttp session. The
credentials come from the catalog (the model's namespace's own Secret, else the
gateway-wide one if configured; or the directory file) and are read at every
call, so a rotated Secret applies at once. A location
outside the grants of the model's namespace (:mod:`grants`) is refused before
any request is made.

A missing object, a refused read or an unreachable store is the reference's
InvalidS3ObjectException; an object over the limit (15 MB) is
ImageTooLargeException, detected from Content-Length or while reading, so an
oversized object is never held in memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import aiohttp
import yarl

from kiu import sigv4
from kiu.gateway import errors, grants, images

log = logging.getLogger(__name__)

_BUCKET = re.compile(r"[0-9A-Za-z.\-_]{3,255}")
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Location:
    bucket: str
    name: str
    version: str | None = None


class ObjectStore:
    """Reads objects from one S3-compatible endpoint."""

    def __init__(
        self,
        *,
        endpoint: str,
        credentials: Callable[[str], sigv4.Credentials | None],
        region: str = "us-east-1",
        allowed: grants.Grants | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"object store endpoint must be an http(s) URL, got {endpoint!r}")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._credentials = credentials
        self._region = region
        self._grants = allowed or grants.Grants()
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(
        self,
        location: Location,
        *,
        namespace: str,
        deadline: float,
        max_bytes: int = images.MAX_S3_BYTES,
    ) -> bytes:
        """The object's bytes, for a model of ``namespace``; ``deadline`` is in event-loop time."""
        if _BUCKET.fullmatch(location.bucket) is None:
            raise errors.InvalidParameter("Image.S3Object.Bucket is not a valid bucket name.")
        if not 1 <= len(location.name) <= 1024:
            raise errors.InvalidParameter("Image.S3Object.Name must be 1 to 1024 characters.")
        self._grants.check(namespace=namespace, bucket=location.bucket, name=location.name)
        credentials = self._credentials(namespace)
        if credentials is None:
            raise errors.InvalidS3Object(
                f"The gateway has no object-storage credentials for namespace {namespace}."
            )
        path = f"{self._prefix}/{location.bucket}/{quote(location.name, safe='/~')}"
        query = f"versionId={quote(location.version, safe='-_.~')}" if location.version else ""
        headers = sigv4.sign(
            method="GET",
            host=self._host,
            path=path,
            query=query,
            credentials=credentials,
            region=self._region,
            service="s3",
            now=self._clock(),
            double_encode=False,
        )
        headers.pop("host")
        url = yarl.URL(f"{self._origin}{path}" + (f"?{query}" if query else ""), encoded=True)
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        try:
            async with asyncio.timeout_at(deadline):
                async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
                    if resp.status != 200:
                        log.info(
                            "object store answered %s for s3://%s/%s",
                            resp.status,
                            location.bucket,
                            location.name[:200],
                        )
                        raise errors.InvalidS3Object()
                    if resp.content_length is not None and resp.content_length > max_bytes:
                        raise _too_large(resp.content_length, max_bytes)
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise _too_large(size, max_bytes)
                        chunks.append(chunk)
                    return b"".join(chunks)
        except TimeoutError:
            raise errors.InvalidS3Object(
                "Timed out reading the object from object storage."
            ) from None
        except aiohttp.ClientError as exc:
            log.warning("object store unreachable: %s", type(exc).__name__)
            raise errors.InvalidS3Object() from None


def _too_large(size: int, limit: int) -> errors.ImageTooLarge:
    return errors.ImageTooLarge(f"Object size {size} bytes exceeds the limit of {limit} bytes.")
