"""Verifying the AWS Signature Version 4 of incoming requests (:mod:`kiu.sigv4` holds the
canonical form both the verifier and the signers use).

``x-amz-content-sha256``, when sent, must equal the body's hash (``UNSIGNED-PAYLOAD``
is refused: a body that is not signed could be replaced in flight). Query-string
(presigned) authentication is not accepted.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from kiu.gateway import errors
from kiu.sigv4 import (
    ALGORITHM,
    Credentials,
    amz_date,
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    parse_amz_date,
    signature,
    signing_key,
    string_to_sign,
)

#: Default tolerated difference between the client's clock and the gateway's.
DEFAULT_MAX_SKEW = 300.0

_AUTH_FIELD = re.compile(r"\s*(Credential|SignedHeaders|Signature)\s*=\s*([^,\s]*)\s*")


@dataclass(frozen=True, slots=True)
class Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


# --- verification --------------------------------------------------------------------


def parse_authorization(value: str) -> Authorization:
    """Parse an Authorization header; IncompleteSignature if it is not SigV4."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise errors.IncompleteSignature(
            f"Authorization header requires the {ALGORITHM} algorithm."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        match = _AUTH_FIELD.fullmatch(part)
        if match is None:
            raise errors.IncompleteSignature(
                "Authorization header requires Credential, SignedHeaders and Signature."
            )
        fields[match.group(1)] = match.group(2)
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise errors.IncompleteSignature(
            "Authorization header requires Credential, SignedHeaders and Signature."
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise errors.IncompleteSignature(
            "Credential should be scoped to a valid region, service and aws4_request."
        )
    signed = tuple(fields["SignedHeaders"].split(";"))
    if list(signed) != sorted(set(signed)) or not all(signed):
        raise errors.IncompleteSignature("SignedHeaders must be sorted, unique and lower-case.")
    return Authorization(
        access_key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=signed,
        signature=fields["Signature"].lower(),
    )


class ReplayGuard:
    """Remembers used signatures until their request time leaves the window.

    A signature covers the method, path, signed headers, body and the second it
    was made, so seeing one twice within the window means the same request was
    sent again. Entries live in per-second buckets keyed by the signed
    ``X-Amz-Date``; when ``capacity`` is reached the oldest second is dropped and
    becomes the floor: requests dated before it count as replayed, so memory stays
    bounded and nothing remembered can be accepted again. The guard is per gateway
    replica: a replay sent to another replica within the window is not caught.
    """

    def __init__(self, *, window: float = DEFAULT_MAX_SKEW, capacity: int = 500_000) -> None:
        self._window = window
        self._capacity = capacity
        self._buckets: dict[int, set[int]] = {}
        self._size = 0
        self._floor = 0

    def __len__(self) -> int:
        return self._size

    def admit(self, *, signature: str, signed_at: float, now: float) -> bool:
        """Record a signature; False if it was seen before or is older than the floor."""
        second = int(signed_at)
        if second < self._floor:
            return False
        token = int(signature[:16], 16)
        bucket = self._buckets.get(second)
        if bucket is None:
            self._expire(now)
            bucket = self._buckets[second] = set()
        elif token in bucket:
            return False
        bucket.add(token)
        self._size += 1
        if self._size > self._capacity:
            self._drop_oldest()
        return True

    def forget(self, *, signature: str, signed_at: float) -> None:
        """Release a signature admitted for a request that then failed, so it may be retried."""
        bucket = self._buckets.get(int(signed_at))
        token = int(signature[:16], 16)
        if bucket is not None and token in bucket:
            bucket.discard(token)
            self._size -= 1

    def _expire(self, now: float) -> None:
        horizon = int(now - self._window) - 1
        for second in [s for s in self._buckets if s < horizon]:
            self._size -= len(self._buckets.pop(second))

    def _drop_oldest(self) -> None:
        oldest = min(self._buckets)
        self._size -= len(self._buckets.pop(oldest))
        self._floor = max(self._floor, oldest + 1)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What verification needs of an incoming request, as received."""

    method: str
    path: str  # raw path, percent-encoded as on the request line
    query: str  # raw query string
    headers: Callable[[str], list[str]]  # every value of a lower-case header name
    payload_sha256: str


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature checked out: the key, the signature and its time."""

    credentials: Credentials
    signature: str
    signed_at: float


def verify(
    request: SignedRequest,
    *,
    lookup: Callable[[str], Credentials | None],
    now: float,
    service: str = "rekognition",
    max_skew: float = DEFAULT_MAX_SKEW,
) -> Verified:
    """Check a request's SigV4 signature.

    Raises MissingAuthenticationToken, IncompleteSignature, UnrecognizedClient
    (unknown key) or InvalidSignature (wrong signature, expired).
    """
    values = request.headers("authorization")
    if not values:
        raise errors.MissingAuthenticationToken()
    if len(values) != 1:
        raise errors.IncompleteSignature("Only one Authorization header is allowed.")
    auth = parse_authorization(values[0])
    if "host" not in auth.signed_headers:
        raise errors.IncompleteSignature("The host header must be signed.")
    dates = request.headers("x-amz-date")
    if len(dates) != 1 or "x-amz-date" not in auth.signed_headers:
        raise errors.IncompleteSignature("A signed X-Amz-Date header is required.")
    date = dates[0].strip()
    try:
        signed_at = parse_amz_date(date)
    except ValueError:
        raise errors.IncompleteSignature(
            "X-Amz-Date must be in the form YYYYMMDDTHHMMSSZ."
        ) from None
    if auth.date != date[:8]:
        raise errors.InvalidSignature("Credential date does not match X-Amz-Date.")
    if auth.service != service:
        raise errors.InvalidSignature(
            f"Credential should be scoped to correct service: '{service}'."
        )
    if abs(now - signed_at) > max_skew:
        raise errors.InvalidSignature(
            f"Signature expired: {date} is outside the allowed window of "
            f"{int(max_skew)} seconds around {amz_date(now)}."
        )
    claimed = request.headers("x-amz-content-sha256")
    if claimed and claimed[0].strip().lower() != request.payload_sha256:
        raise errors.InvalidSignature(
            "The provided x-amz-content-sha256 header does not match the request body."
        )
    credentials = lookup(auth.access_key_id)
    if credentials is None:
        raise errors.UnrecognizedClient()
    canonical = canonical_request(
        method=request.method,
        uri=canonical_uri(request.path),
        query=canonical_query(request.query),
        headers=canonical_headers(request.headers, auth.signed_headers),
        signed_headers=auth.signed_headers,
        payload_sha256=request.payload_sha256,
    )
    key = signing_key(credentials.secret_access_key, auth.date, auth.region, auth.service)
    expected = signature(key, string_to_sign(amz_date=date, scope=auth.scope, canonical=canonical))
    if not hmac.compare_digest(expected, auth.signature):
        raise errors.InvalidSignature()
    return Verified(credentials, expected, signed_at)
