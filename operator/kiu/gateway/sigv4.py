"""AWS Signature Version 4, both ways: verify incoming requests, sign outgoing ones.

One canonicalisation serves the verifier (every AWS JSON and REST request) and the
signer (object storage GETs for ``Image.S3Object``), so the two cannot drift.
The rules follow the published algorithm and match botocore byte for byte:

* canonical URI: dot segments and repeated slashes removed, then URI-encoded once
  more (``double_encode``, all services but S3) or taken as sent (S3);
* canonical query: pairs sorted by encoded key then value, each RFC 3986 encoded;
* canonical headers: the signed ones, lower-cased, values trimmed and inner runs of
  spaces collapsed, repeated headers joined with ``,``;
* payload: the SHA-256 of the body; ``x-amz-content-sha256``, when sent, must
  equal it (``UNSIGNED-PAYLOAD`` is refused: a body that is not signed could be
  replaced in flight).

Signing keys are derived once per key, day, region and service and cached.
Query-string (presigned) authentication is not accepted.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from kiu.gateway import errors

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Default tolerated difference between the client's clock and the gateway's.
DEFAULT_MAX_SKEW = 300.0

_AUTH_FIELD = re.compile(r"\s*(Credential|SignedHeaders|Signature)\s*=\s*([^,\s]*)\s*")
_AMZ_DATE = re.compile(r"^(\d{8})T(\d{6})Z$")


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key. The secret never appears in ``repr`` (nor so in logs)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


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


# --- canonical form ------------------------------------------------------------------


def normalize_path(path: str) -> str:
    """RFC 3986 dot-segment removal plus collapsing of repeated slashes (as botocore)."""
    if not path:
        return "/"
    parts = [p for p in path.split("/") if p and p != "."]
    out: list[str] = []
    for part in parts:
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and out else ""
    return first + "/".join(out) + last


def canonical_uri(path: str, *, double_encode: bool = True) -> str:
    """The canonical URI of a path as sent on the request line (still percent-encoded)."""
    if not double_encode:
        return path or "/"
    if path == "/":  # every AWS JSON call
        return path
    return quote(normalize_path(path), safe="/~")


def canonical_query(raw_query: str) -> str:
    """The canonical query string of a raw (percent-encoded) query string."""
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((_encode(unquote(key)), _encode(unquote(value))))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_headers(
    headers: Callable[[str], Iterable[str]], signed_headers: Iterable[str]
) -> str:
    """``name:value`` lines (with the final newline) for the signed headers.

    ``headers(name)`` returns every value sent for a lower-case header name.
    """
    lines = []
    for name in signed_headers:
        value = ",".join(" ".join(v.split()) for v in headers(name))
        lines.append(f"{name}:{value}\n")
    return "".join(lines)


def canonical_request(
    *,
    method: str,
    uri: str,
    query: str,
    headers: str,
    signed_headers: Iterable[str],
    payload_sha256: str,
) -> str:
    return "\n".join((method, uri, query, headers, ";".join(signed_headers), payload_sha256))


def string_to_sign(*, amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


@functools.lru_cache(maxsize=4096)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived key of one secret for one day, region and service (cached)."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.digest(key, text.encode("utf-8"), "sha256")


def signature(key: bytes, text: str) -> str:
    # hmac.digest is OpenSSL's one-shot HMAC: a fraction of hmac.new's Python-level cost.
    return hmac.digest(key, text.encode("utf-8"), "sha256").hex()


def amz_date(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def parse_amz_date(value: str) -> float:
    """Seconds since the epoch of an ``X-Amz-Date`` value; ValueError if malformed.

    Read field by field, with the ranges ``time.strptime`` accepts (seconds up to
    61), which costs more than the rest of a signature check.
    """
    match = _AMZ_DATE.match(value)
    if match is None:
        raise ValueError(value)
    day, clock = match.groups()
    fields = (
        int(day[:4]), int(day[4:6]), int(day[6:]),
        int(clock[:2]), int(clock[2:4]), int(clock[4:]),
    )  # fmt: skip
    datetime.datetime(*fields[:5])  # ValueError for a day, hour or minute out of range
    if not fields[0] >= 1 or fields[5] > 61:
        raise ValueError(value)
    return float(calendar.timegm(fields))


# --- signing -------------------------------------------------------------------------


def sign(
    *,
    method: str,
    host: str,
    path: str,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    payload_sha256: str = EMPTY_SHA256,
    credentials: Credentials,
    region: str,
    service: str,
    now: float,
    double_encode: bool = True,
) -> dict[str, str]:
    """Headers to send: the given ones plus Host, X-Amz-Date, payload hash, Authorization.

    ``path`` and ``query`` must be percent-encoded exactly as they go on the wire.
    """
    date = amz_date(now)
    out = {k.lower(): v for k, v in (headers or {}).items()}
    out["host"] = host
    out["x-amz-date"] = date
    out["x-amz-content-sha256"] = payload_sha256
    names = sorted(out)
    scope = f"{date[:8]}/{region}/{service}/aws4_request"
    canonical = canonical_request(
        method=method,
        uri=canonical_uri(path, double_encode=double_encode),
        query=canonical_query(query),
        headers=canonical_headers(lambda n: (out[n],), names),
        signed_headers=names,
        payload_sha256=payload_sha256,
    )
    key = signing_key(credentials.secret_access_key, date[:8], region, service)
    sig = signature(key, string_to_sign(amz_date=date, scope=scope, canonical=canonical))
    out["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    return out


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
