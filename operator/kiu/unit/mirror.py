"""The local copy of a model kept in S3 or an S3-compatible store, made before the unit loads.

The URI forms are Triton's (`--model-repository`):

- `s3://bucket/path`: Amazon S3, over HTTPS, at `<bucket>.s3.<region>.amazonaws.com`;
- `s3://host:port/bucket/path`: an S3-compatible store, over HTTP (Triton's default);
- `s3://https://host:port/bucket/path` (or `s3://http://...`): the scheme said explicitly.

Credentials and region come from the environment, as the operator passes them from
`repositorySecretName`: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_REGION or AWS_DEFAULT_REGION (us-east-1 when neither is set). Without a key,
requests go unsigned (a public bucket).

Only the served model is copied: its directory, then the directory of every model its
ensemble steps name (read from each copied config), so a large shared repository costs
one model's bytes. Requests are signed with :mod:`kiu.sigv4` and sent with urllib: the
copy runs once, before anything is served.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from google.protobuf import text_format

from kiu import sigv4
from kiu.unit import repository

log = logging.getLogger(__name__)

SCHEME = "s3://"
DEFAULT_REGION = "us-east-1"
#: Seconds a request may wait for the store before the copy fails.
TIMEOUT = 60.0

_ENDPOINT = re.compile(r"^(?:(https?)://)?([0-9A-Za-z.\-]+):([0-9]+)$")
_CHUNK = 1024 * 1024


class MirrorError(Exception):
    """The model could not be copied; the message names the URI and the store's answer."""


@dataclass(frozen=True)
class Location:
    """Where an s3:// repository is: the origin requests go to, the bucket and the prefix."""

    uri: str
    bucket: str
    prefix: str  # without leading or trailing slashes; "" for the bucket's root
    endpoint: str | None = None  # scheme://host:port of an S3-compatible store


def parse(uri: str) -> Location:
    """Read an s3:// URI in one of Triton's forms; ValueError if it is none of them."""
    if not uri.startswith(SCHEME):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    rest = uri.removeprefix(SCHEME)
    scheme, _, after = rest.partition("://")
    if after and scheme in ("http", "https"):
        first, _, rest = after.partition("/")
        first = f"{scheme}://{first}"
    else:
        first, _, rest = rest.partition("/")
    endpoint = None
    match = _ENDPOINT.match(first)
    if match:
        endpoint = f"{match.group(1) or 'http'}://{match.group(2)}:{match.group(3)}"
        bucket, _, rest = rest.partition("/")
    elif "://" in first:
        raise ValueError(f"{uri!r}: an S3-compatible store is s3://[http(s)://]host:port/bucket")
    else:
        bucket = first
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    return Location(uri=uri, bucket=bucket, prefix=rest.strip("/"), endpoint=endpoint)


@dataclass(frozen=True)
class _Access:
    credentials: sigv4.Credentials | None
    token: str | None
    region: str


def _access(environ: Mapping[str, str]) -> _Access:
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    return _Access(
        credentials=sigv4.Credentials(key, secret) if key and secret else None,
        token=environ.get("AWS_SESSION_TOKEN") or None,
        region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
    )


class _Bucket:
    """Signed GETs on one bucket: listings and objects."""

    def __init__(self, location: Location, access: _Access) -> None:
        self._access = access
        if location.endpoint is not None:  # path style: the bucket is the first segment
            self._origin = location.endpoint
            self._root = f"/{location.bucket}"
        else:  # virtual-hosted style, as AWS recommends
            self._origin = f"https://{location.bucket}.s3.{access.region}.amazonaws.com"
            self._root = ""
        self._host = self._origin.split("://", 1)[1]

    def _open(self, path: str, query: str = "") -> http.client.HTTPResponse:
        headers: dict[str, str] = {}
        if self._access.token:
            headers["x-amz-security-token"] = self._access.token
        if self._access.credentials is not None:
            headers = sigv4.sign(
                method="GET",
                host=self._host,
                path=path,
                query=query,
                headers=headers,
                credentials=self._access.credentials,
                region=self._access.region,
                service="s3",
                now=time.time(),
                double_encode=False,
            )
            headers.pop("host")
        url = self._origin + path + (f"?{query}" if query else "")
        request = urllib.request.Request(url, headers=headers)
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as error:
            raise MirrorError(_store_error(error)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise MirrorError(f"cannot reach {self._origin}: {reason}") from None
        return response

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (ListObjectsV2, page by page)."""
        keys: list[str] = []
        token = None
        while True:
            query = f"list-type=2&prefix={_quote(prefix)}"
            if token:
                query += f"&continuation-token={_quote(token)}"
            with self._open(self._root + "/", query) as response:
                page = ElementTree.fromstring(response.read())
            keys += [e.text or "" for e in page.iter() if _tag(e) == "Key"]
            token = next((e.text for e in page.iter() if _tag(e) == "NextContinuationToken"), None)
            truncated = next((e.text for e in page.iter() if _tag(e) == "IsTruncated"), "false")
            if truncated != "true" or not token:
                return keys

    def download(self, key: str, target: Path) -> int:
        """Write the object to `target` (through a temporary file); returns its size."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        path = f"{self._root}/{quote(key, safe='/~')}"
        with self._open(path) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
        os.replace(partial, target)
        return target.stat().st_size


def _quote(text: str) -> str:
    return quote(text, safe="-_.~")


def _tag(element: ElementTree.Element) -> str:
    return element.tag.rpartition("}")[2]


def _store_error(error: urllib.error.HTTPError) -> str:
    """`Code: Message` of an S3 error document, else the HTTP status."""
    try:
        document = ElementTree.fromstring(error.read())
        code = document.findtext("Code") or ""
        message = document.findtext("Message") or ""
    except ElementTree.ParseError:
        code = message = ""
    if code:
        return f"{code}: {message}" if message else code
    return f"HTTP {error.code} {error.reason}"


def mirror(
    uri: str, model: str, destination: Path, *, environ: Mapping[str, str] = os.environ
) -> Path:
    """Copy `model` and the models its ensemble names from the s3:// repository `uri` into
    `destination`, which becomes a local repository; returns it.

    Raises MirrorError naming the URI and what the store said.
    """
    try:
        location = parse(uri)
    except ValueError as error:
        raise MirrorError(str(error)) from None
    bucket = _Bucket(location, _access(environ))
    pending, copied = [model], set()
    files = size = 0
    try:
        while pending:
            name = pending.pop()
            if name in copied:
                continue
            base = f"{location.prefix}/{name}/" if location.prefix else f"{name}/"
            keys = [key for key in bucket.keys(base) if not key.endswith("/")]
            if not keys:
                raise MirrorError(f"no model {name!r}: nothing under {base}")
            local = destination / name
            shutil.rmtree(local, ignore_errors=True)  # a restarted unit copies afresh
            for key in keys:
                relative = PurePosixPath(key.removeprefix(base))
                if ".." in relative.parts:
                    raise MirrorError(f"key {key!r} leaves the model's directory")
                size += bucket.download(key, local / relative)
                files += 1
            copied.add(name)
            config = repository.read_config(destination, name)
            pending += [step.model_name for step in config.ensemble_scheduling.step]
    except (
        MirrorError,
        repository.RepositoryError,
        text_format.ParseError,
        ElementTree.ParseError,
        OSError,  # a connection lost while reading, a full disk
    ) as error:
        raise MirrorError(f"cannot copy model {model!r} from {uri}: {error}") from None
    log.info(
        "copied %s (%d models, %d files, %d bytes) from %s to %s",
        model, len(copied), files, size, uri, destination,
    )  # fmt: skip
    return destination
