"""The native REST adapter: ``POST /v1/namespaces/{ns}/projectversions/{name}:detect``.

The body is either the raw image (``Content-Type: image/png`` or
``image/jpeg``; options as query parameters ``minConfidence`` and
``maxResults``) or a JSON document shaped as DetectCustomLabels without the ARN
(``{"Image": {"Bytes": ...} | {"S3Object": ...}, "MinConfidence": ..., "MaxResults": ...}``).
The answer is ``{"CustomLabels": [...]}``, errors are the reference's, as on the
AWS JSON API. Besides SigV4 it accepts Kubernetes bearer tokens.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from kiu.gateway import auth, awsjson, dataplane, errors, images, wire

PATH = "/v1/namespaces/{namespace}/projectversions/{name}:detect"
_RAW_TYPES = frozenset(("image/png", "image/jpeg"))
_JSON_TYPES = frozenset(("application/json", errors.CONTENT_TYPE))
_OPTIONS = ("minConfidence", "maxResults")


class Api:
    """aiohttp handler of the native REST API."""

    def __init__(self, plane: dataplane.Dataplane, *, read_timeout: float) -> None:
        self._plane = plane
        self._read_timeout = read_timeout

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await wire.read_body(
                request,
                within=self._read_timeout,
                too_large=errors.ImageTooLarge("Request size exceeds the limit."),
            )
            detect = _Detect(
                wire.presented(request, body),
                body,
                namespace=request.match_info["namespace"],
                name=request.match_info["name"],
                content_type=request.content_type,
                query=request.query,
            )
            labels = await self._plane.detect(detect)
            return wire.json_response(
                {"CustomLabels": [label.to_json() for label in labels]},
                content_type="application/json",
            )
        except errors.GatewayError as error:
            return wire.error_response(error)


class _Detect:
    tokens = True

    def __init__(
        self,
        presented: auth.Presented,
        body: bytes,
        *,
        namespace: str,
        name: str,
        content_type: str,
        query: Mapping[str, str],
    ) -> None:
        self.presented = presented
        self._body = body
        self._target = dataplane.Target(namespace, name)
        self._content_type = content_type
        self._query = query

    def target(self) -> dataplane.Target:
        return self._target

    def params(self) -> dataplane.DetectParams:
        if self._content_type in _RAW_TYPES:
            if len(self._body) > images.MAX_BYTES:
                raise errors.ImageTooLarge(
                    f"Image size exceeds the limit of {images.MAX_BYTES} bytes."
                )
            options = {name: _number(self._query.get(name), name) for name in _OPTIONS}
            return dataplane.DetectParams(
                image=self._body,
                min_confidence=awsjson.confidence(options["minConfidence"]),
                max_results=awsjson.integer(options, "maxResults", low=0),
            )
        if self._content_type in _JSON_TYPES:
            doc, blob = awsjson.split_image(self._body)
            return awsjson.detect_params(doc, blob)
        raise errors.InvalidParameter(
            "Content-Type must be image/png, image/jpeg or application/json."
        )


def _number(text: str | None, name: str) -> float | int | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise errors.InvalidParameter(f"{name} must be a number.") from None
    return int(value) if value.is_integer() and "." not in text else value
