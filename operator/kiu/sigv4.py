"""AWS Signature Version 4: the canonical form and the signer.

One canonicalisation serves the gateway's verifier (:mod:`kiu.gateway.verification`,
every AWS JSON and REST request) and the signers (the gateway's object storage GETs
for ``Image.S3Object``, the cpu runtime's copy of an s3:// repository), so they
cannot drift. The rules follow the published algorithm and match botocore byte for
byte:

* canonical URI: dot segments and repeated slashes removed, then URI-encoded once
  more (``double_encode``, all services but S3) or taken as sent (S3);
* canonical query: pairs sorted by encoded key then value, each RFC 3986 encoded;
* canonical headers: the signed ones, lower-cased, values trimmed and inner runs of
  spaces collapsed, repeated headers joined with ``,``;
* payload: the SHA-256 of the body.

Signing keys are derived once per key, day, region and service and cached.
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

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_AMZ_DATE = re.compile(r"^(\d{8})T(\d{6})Z$")


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key. The secret never appears in ``repr`` (nor so in logs)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


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
