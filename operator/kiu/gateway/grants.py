"""Which stored objects each namespace's callers may name in ``Image.S3Object``.

The gateway reads objects with its own credentials on the caller's behalf, so
without a limit any caller could have it read any object those credentials
reach (a confused deputy). Each namespace (the tenant a model lives in) is
granted buckets or key prefixes (``--s3-allow retail=photos/retail/``); a
location outside the grants of the model's namespace is refused before
anything is read, with the same AccessDeniedException whether or not the
object exists. Nothing is granted by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kiu.gateway import errors


@dataclass(frozen=True, slots=True)
class Grant:
    """Every key of ``bucket`` starting with ``prefix`` (the whole bucket if empty)."""

    bucket: str
    prefix: str = ""

    def covers(self, bucket: str, name: str) -> bool:
        return bucket == self.bucket and name.startswith(self.prefix)


class Grants:
    """The grants of every namespace."""

    def __init__(self, grants: Mapping[str, Iterable[Grant]] | None = None) -> None:
        self._grants = {namespace: tuple(g) for namespace, g in (grants or {}).items()}

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Grants:
        """From ``NAMESPACE=BUCKET[/PREFIX]`` entries; raises ValueError naming a bad one."""
        grants: dict[str, list[Grant]] = {}
        for entry in entries:
            namespace, _, target = entry.partition("=")
            bucket, _, prefix = target.partition("/")
            if not namespace or not bucket:
                raise ValueError(f"expected NAMESPACE=BUCKET[/PREFIX], got {entry!r}")
            grants.setdefault(namespace, []).append(Grant(bucket, prefix))
        return cls(grants)

    def check(self, *, namespace: str, bucket: str, name: str) -> None:
        """Raise AccessDenied unless a grant of ``namespace`` covers the object.

        A key with ``.`` or ``..`` segments is never covered: a store or proxy
        that normalises paths could resolve it outside the prefix.
        """
        if not any(part in (".", "..") for part in name.split("/")) and any(
            grant.covers(bucket, name) for grant in self._grants.get(namespace, ())
        ):
            return
        raise errors.AccessDenied(
            f"Models in namespace {namespace} may not read objects of s3://{bucket} at this key."
        )
