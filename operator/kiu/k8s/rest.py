"""JSON requests to the Kubernetes API by path, answered as plain dicts.

The operator handles objects as dicts end to end (manifests are built as dicts,
watch events arrive as dicts), so the generated model classes would only add a
conversion each way; server-side apply, merge patches and Leases are all a path,
a verb and a JSON body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s_client

from kiu.k8s import errors

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

#: Seconds a request may take in all; a stuck API server must not stall a reconcile forever.
_TIMEOUT = 30.0


async def call(
    api: k8s_client.ApiClient,
    *,
    method: str,
    path: str,
    query: Mapping[str, str | int | bool] | None = None,
    body: Any = None,
    content_type: str = JSON,
) -> dict[str, Any]:
    """Send one request; the decoded JSON answer, or a `kiu.k8s.errors` exception."""
    params = [
        (key, str(value).lower() if isinstance(value, bool) else value)
        for key, value in (query or {}).items()
    ]
    try:
        answer = await api.call_api(
            path,
            method,
            query_params=params,
            header_params={"Accept": JSON, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            response_types_map={200: "object", 201: "object", 202: "object"},
            _return_http_data_only=True,
            _request_timeout=_TIMEOUT,
        )
    except k8s_client.ApiException as exc:
        raise errors.from_api_exception(exc) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise errors.Unavailable(f"{method} {path}: {exc or type(exc).__name__}") from exc
    return answer if isinstance(answer, dict) else {}
