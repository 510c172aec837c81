"""Domain errors of the gateway: each carries the reference error name and HTTP status.

Every rejection the gateway makes is one of these classes, raised wherever the
decision is taken (admission, validation, routing) and turned into bytes on the
wire by :func:`render` only, so the AWS JSON 1.1 adapter and the native REST
adapter answer with the same shape::

    HTTP <status>
    Content-Type: application/x-amz-json-1.1
    x-amzn-RequestId: <uuid>
    x-amzn-ErrorType: <Name>

    {"__type": "<Name>", "message": "..."}

``outcome`` sorts each error into the reference metrics: ``user_error``
(UserErrorCount), ``throttled`` (ThrottledCount) or ``server_error``
(ServerErrorCount). Messages never contain secrets or image bytes.

Tree::

    GatewayError
    +-- ClientError (400, user_error)
    |   +-- AccessDenied, UnrecognizedClient, InvalidSignature, IncompleteSignature,
    |   |   MissingAuthenticationToken                                  (authentication)
    |   +-- InvalidParameter, InvalidImageFormat, ImageTooLarge, InvalidS3Object,
    |   |   InvalidPaginationToken, Serialization, UnknownOperation     (the request)
    |   +-- ResourceNotFound, ResourceInUse, ResourceNotReady (+ ScalingFromZero), LimitExceeded
    |   +-- ProvisionedThroughputExceeded (throttled)
    +-- ServerError (500, server_error)
        +-- InternalServerError, Throttling
"""

from __future__ import annotations

import json
from typing import ClassVar, Literal

Outcome = Literal["success", "throttled", "user_error", "server_error"]

#: Content type of every AWS JSON 1.1 body, errors included.
CONTENT_TYPE = "application/x-amz-json-1.1"


class GatewayError(Exception):
    """A rejection with a reference error name, an HTTP status and a metrics outcome."""

    name: ClassVar[str] = "InternalServerError"
    status: ClassVar[int] = 500
    outcome: ClassVar[Outcome] = "server_error"
    default_message: ClassVar[str] = "Internal server error."
    #: Seconds after which a retry may succeed, sent as ``Retry-After`` when set.
    retry_after: int | None = None

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ClientError(GatewayError):
    """The request cannot succeed as sent (HTTP 400)."""

    status = 400
    outcome: ClassVar[Outcome] = "user_error"


class ServerError(GatewayError):
    """The gateway or a unit failed; the client may retry (HTTP 500)."""

    status = 500
    outcome: ClassVar[Outcome] = "server_error"


# --- authentication and authorization ------------------------------------------------


class AccessDenied(ClientError):  # noqa: N818 - named as on the wire
    name = "AccessDeniedException"
    default_message = "You are not authorized to perform this operation."


class UnrecognizedClient(ClientError):  # noqa: N818 - named as on the wire
    name = "UnrecognizedClientException"
    default_message = "The security token included in the request is invalid."


class InvalidSignature(ClientError):  # noqa: N818 - named as on the wire
    name = "InvalidSignatureException"
    default_message = (
        "The request signature we calculated does not match the signature you provided."
    )


class IncompleteSignature(ClientError):  # noqa: N818 - named as on the wire
    name = "IncompleteSignatureException"
    default_message = "The request signature does not conform to AWS standards."


class MissingAuthenticationToken(ClientError):  # noqa: N818 - named as on the wire
    name = "MissingAuthenticationTokenException"
    status = 403
    default_message = "Missing Authentication Token"


# --- the request itself --------------------------------------------------------------


class InvalidParameter(ClientError):  # noqa: N818 - named as on the wire
    name = "InvalidParameterException"
    default_message = "Request has invalid parameters."


class InvalidImageFormat(ClientError):  # noqa: N818 - named as on the wire
    name = "InvalidImageFormatException"
    default_message = "Request has unsupported image format; use PNG or JPEG."


class ImageTooLarge(ClientError):  # noqa: N818 - named as on the wire
    name = "ImageTooLargeException"
    default_message = "Image size is too large."


class InvalidS3Object(ClientError):  # noqa: N818 - named as on the wire
    name = "InvalidS3ObjectException"
    default_message = (
        "Unable to get object metadata from S3. Check object key, region and/or access permissions."
    )


class InvalidPaginationToken(ClientError):  # noqa: N818 - named as on the wire
    name = "InvalidPaginationTokenException"
    default_message = "Invalid pagination token."


class Serialization(ClientError):  # noqa: N818 - named as on the wire
    name = "SerializationException"
    default_message = "The request body is not a valid JSON object."


class RequestTimeout(ClientError):  # noqa: N818 - named as on the wire
    name = "RequestTimeoutException"
    status = 408
    default_message = "The request body was not received in time."


class UnknownOperation(ClientError):  # noqa: N818 - named as on the wire
    name = "UnknownOperationException"
    default_message = "The operation is not supported."


class UnknownPath(UnknownOperation):
    status = 404
    default_message = "No such path on this endpoint."


class MethodNotAllowed(UnknownOperation):
    status = 405
    default_message = "The method is not allowed on this path."


# --- the resource --------------------------------------------------------------------


class ResourceNotFound(ClientError):  # noqa: N818 - named as on the wire
    name = "ResourceNotFoundException"
    default_message = "The resource specified in the request cannot be found."


class ResourceInUse(ClientError):  # noqa: N818 - named as on the wire
    name = "ResourceInUseException"
    default_message = "The specified resource is already being used."


class ResourceNotReady(ClientError):  # noqa: N818 - named as on the wire
    name = "ResourceNotReadyException"
    default_message = "The requested resource isn't ready."


class ScalingFromZero(ResourceNotReady):
    """A model at zero units could not take the call in time; its first unit is coming."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LimitExceeded(ClientError):  # noqa: N818 - named as on the wire
    name = "LimitExceededException"
    default_message = "A service limit was exceeded."


class ProvisionedThroughputExceeded(ClientError):  # noqa: N818 - named as on the wire
    name = "ProvisionedThroughputExceededException"
    outcome = "throttled"
    default_message = "The number of requests exceeded your throughput limit."


# --- server side ---------------------------------------------------------------------


class InternalServerError(ServerError):
    name = "InternalServerError"


class Throttling(ServerError):  # noqa: N818 - named as on the wire
    """Admitted by the TPS budget but no unit could take it before the deadline."""

    name = "ThrottlingException"
    outcome = "throttled"
    default_message = "Slow down."


def render(error: GatewayError) -> tuple[int, dict[str, str], bytes]:
    """The one mapping of a domain error to the wire: status, headers and body.

    The request id header is added by the server for every response.
    """
    body = json.dumps({"__type": error.name, "message": error.message}).encode()
    headers = {"Content-Type": CONTENT_TYPE, "x-amzn-ErrorType": error.name}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return error.status, headers, body
