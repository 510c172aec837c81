"""Errors of the Kubernetes API as kiu sees them.

Code outside ``kiu.k8s`` never handles the client library's exceptions: every
call in this package raises one of these instead (``from_api_exception`` for API
answers, ``Unavailable`` for transport failures), keeping the answer's status and
message. Tree::

    KubernetesError                 any failure talking to the API (status 0 = no answer)
    +-- NotFound          404       the object (or its kind) does not exist
    +-- Conflict          409       stale resourceVersion, or it already exists
    +-- Gone              410       a watch's resourceVersion is too old: list again
    +-- Invalid           400, 422  the API refused the body
    +-- Unauthorized      401       the credentials are not accepted
    +-- Forbidden         403       RBAC denies the verb
    +-- Unavailable       429, 5xx, no answer: retry later
"""

from __future__ import annotations

import json
from typing import Any


class KubernetesError(Exception):
    """A request to the Kubernetes API failed."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason


class NotFound(KubernetesError):  # noqa: N818 - named after the HTTP status
    """404: the object does not exist."""


class Conflict(KubernetesError):  # noqa: N818 - named after the HTTP status
    """409: the object changed since it was read, or already exists."""


class Gone(KubernetesError):  # noqa: N818 - named after the HTTP status
    """410: the resourceVersion is too old; list again."""


class Invalid(KubernetesError):  # noqa: N818 - named after the HTTP status
    """400 or 422: the API refused the request body."""


class Unauthorized(KubernetesError):  # noqa: N818 - named after the HTTP status
    """401: the credentials were not accepted."""


class Forbidden(KubernetesError):  # noqa: N818 - named after the HTTP status
    """403: not allowed by RBAC."""


class Unavailable(KubernetesError):  # noqa: N818 - named after the HTTP status
    """429, 5xx or no answer at all: the API may answer later."""


_BY_STATUS: dict[int, type[KubernetesError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: Unavailable,
}


def from_status(status: int, body: Any = None) -> KubernetesError:
    """The error for an HTTP status and a ``Status`` body (dict, JSON text or bytes)."""
    message, reason = _status_text(body)
    kind = _BY_STATUS.get(status) or (
        Unavailable if status >= 500 or status == 0 else KubernetesError
    )
    return kind(message or f"HTTP {status}", status=status, reason=reason)


def from_api_exception(exc: Any) -> KubernetesError:
    """Map the client library's ``ApiException`` (anything with status and body)."""
    status = int(getattr(exc, "status", 0) or 0)
    error = from_status(status, getattr(exc, "body", None))
    if error.message == f"HTTP {status}" and getattr(exc, "reason", None):
        error = type(error)(str(exc.reason), status=status, reason=error.reason)
    return error


def _status_text(body: Any) -> tuple[str, str]:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return body[:512], ""
    if isinstance(body, dict):
        return str(body.get("message") or ""), str(body.get("reason") or "")
    return "", ""
