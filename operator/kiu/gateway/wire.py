"""aiohttp plumbing shared by the adapters: bounded body reads, errors as responses."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from kiu.gateway import auth, errors

#: Header every response carries (botocore reads it into ResponseMetadata.RequestId).
REQUEST_ID = "x-amzn-RequestId"


async def read_body(
    request: web.Request, *, within: float, too_large: errors.GatewayError
) -> bytes:
    """The whole body, within ``within`` seconds and the app's ``client_max_size``.

    A declared Content-Length over the limit is refused before a byte is read.
    """
    declared = request.content_length
    if declared is not None and declared > request.client_max_size:
        raise too_large
    try:
        async with asyncio.timeout(within):
            return await request.read()
    except TimeoutError:
        raise errors.RequestTimeout() from None
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None


def presented(request: web.Request, body: bytes) -> auth.Presented:
    """What the request shows to authenticate, raw as it came."""
    raw = request.raw_path
    path, _, query = raw.partition("?")
    headers = request.headers
    return auth.Presented(
        method=request.method,
        path=path,
        query=query,
        headers=lambda name: headers.getall(name, []),
        body=body,
    )


def error_response(error: errors.GatewayError) -> web.Response:
    status, headers, body = errors.render(error)
    return web.Response(status=status, headers=headers, body=body)


def json_response(document: Any, *, content_type: str = errors.CONTENT_TYPE) -> web.Response:
    return web.Response(
        body=json.dumps(document, separators=(",", ":")).encode(),
        headers={"Content-Type": content_type},
    )
