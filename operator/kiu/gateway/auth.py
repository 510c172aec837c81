"""Who is calling, and may they act on this model.

Three kinds of callers:

* an **access key** (AWS Signature Version 4, every API): the key and its secret
  come from the catalog (Kubernetes Secrets labelled ``kiu.dev/access-key``, or
  the directory file); each key is scoped to namespaces (``*`` = all);
* a **Kubernetes bearer token** (native REST API only): checked with a
  TokenReview, then each model with a SubjectAccessReview for verb ``invoke``
  on ``projectversions`` in group ``kiu.dev``; both answers are cached briefly;
* **anonymous**, only when the gateway was started with ``--allow-anonymous``.

Failures raise the reference's authentication errors (see :mod:`errors`).
Tokens and secrets are never logged; caches key tokens by their SHA-256.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from kiu import sigv4
from kiu.gateway import catalog, errors, verification

#: Bodies larger than this are hashed in a worker thread (hashlib releases the GIL).
_THREAD_HASH_BYTES = 256 * 1024
_CACHE_SIZE = 10_000

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Identity:
    """A Kubernetes user as a TokenReview reports it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller; ``signed`` is the SigV4 proof of this request."""

    kind: Literal["access-key", "token", "anonymous"]
    name: str
    key: catalog.AccessKey | None = None
    identity: Identity | None = None
    signed: verification.Verified | None = None


ANONYMOUS = Principal(kind="anonymous", name="system:anonymous")


class TokenReviewer(Protocol):
    """Kubernetes authentication and authorization of bearer tokens."""

    async def review(self, token: str) -> Identity | None:
        """The user a token belongs to, or None if the token is not valid (TokenReview)."""

    async def allowed(self, identity: Identity, *, namespace: str, name: str, verb: str) -> bool:
        """Whether the user may ``verb`` the ProjectVersion (SubjectAccessReview)."""


@dataclass(slots=True)
class Presented:
    """What a request shows to authenticate, protocol-neutral.

    ``headers(name)`` returns every value of a lower-case header name; ``path``
    and ``query`` are raw, as on the request line.
    """

    method: str
    path: str
    query: str
    headers: Callable[[str], list[str]]
    body: bytes = field(repr=False)


class Authenticator:
    """Authenticates requests and authorizes principals on namespaces and models."""

    def __init__(
        self,
        *,
        keys: Callable[[str], catalog.AccessKey | None],
        tokens: TokenReviewer | None = None,
        allow_anonymous: bool = False,
        max_skew: float = verification.DEFAULT_MAX_SKEW,
        replay: verification.ReplayGuard | None = None,
        cache_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._tokens = tokens
        self._anonymous = allow_anonymous
        self._max_skew = max_skew
        self._replay = replay if replay is not None else verification.ReplayGuard(window=max_skew)
        self._ttl = cache_seconds
        self._clock = clock
        self._reviews: dict[bytes, tuple[float, Identity | None]] = {}
        self._decisions: dict[tuple[Identity, str, str, str], tuple[float, bool]] = {}

    async def authenticate(
        self, presented: Presented, *, tokens: bool = False, once: bool = False
    ) -> Principal:
        """The caller behind a request; ``tokens`` allows Kubernetes bearer tokens.

        ``once`` claims a signed request before it is carried out, in the same
        step as the check, so exactly one of parallel copies passes; the others
        are refused as replays. A claim that fails is released with
        :meth:`failed` so the caller may retry. For operations that change state
        only: botocore signs no nonce, so two identical reads made within one
        second (a retry after throttling, a load test repeating one image) carry
        the same signature.
        """
        values = presented.headers("authorization")
        if not values:
            if self._anonymous:
                return ANONYMOUS
            raise errors.MissingAuthenticationToken()
        scheme, _, credential = values[0].partition(" ")
        if scheme.lower() == "bearer" and len(values) == 1:
            if not tokens or self._tokens is None:
                raise errors.IncompleteSignature(
                    "Bearer tokens are accepted by the native REST API of a gateway "
                    "connected to Kubernetes only."
                )
            return await self._bearer(credential.strip())
        body = presented.body
        if len(body) > _THREAD_HASH_BYTES:
            digest = await asyncio.to_thread(_sha256, body)
        else:
            digest = _sha256(body)
        signed = verification.SignedRequest(
            method=presented.method,
            path=presented.path,
            query=presented.query,
            headers=presented.headers,
            payload_sha256=digest,
        )
        verified = verification.verify(
            signed, lookup=self._credentials, now=self._clock(), max_skew=self._max_skew
        )
        if once and not self._replay.admit(
            signature=verified.signature, signed_at=verified.signed_at, now=self._clock()
        ):
            raise errors.InvalidSignature("The request signature has already been used.")
        key_id = verified.credentials.access_key_id
        return Principal(kind="access-key", name=key_id, key=self._keys(key_id), signed=verified)

    @contextlib.contextmanager
    def failed(self, principal: Principal) -> Iterator[None]:
        """Release the claim of a request authenticated with ``once`` if carrying it out fails.

        A server-side failure (the API server unreachable, the call cancelled) did
        nothing, so the same signed request may be sent again. A refusal of the
        request itself (bad parameters, access denied, the model in use) is its
        final answer and keeps the claim: sending it again later is a replay.
        """
        try:
            yield
        except BaseException as exc:
            refused = isinstance(exc, errors.GatewayError) and exc.outcome == "user_error"
            if principal.signed is not None and not refused:
                self._replay.forget(
                    signature=principal.signed.signature, signed_at=principal.signed.signed_at
                )
            raise

    def _credentials(self, access_key_id: str) -> sigv4.Credentials | None:
        key = self._keys(access_key_id)
        return key.credentials if key is not None else None

    async def _bearer(self, token: str) -> Principal:
        assert self._tokens is not None
        if not token:
            raise errors.UnrecognizedClient("The bearer token is empty.")
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._reviews.get(digest)
        if cached is not None and cached[0] > now:
            identity = cached[1]
        else:
            identity = await self._tokens.review(token)
            _remember(self._reviews, digest, (now + self._ttl, identity))
        if identity is None:
            raise errors.UnrecognizedClient("The bearer token is not valid.")
        return Principal(kind="token", name=identity.username, identity=identity)

    async def authorize(
        self, principal: Principal, *, namespace: str, name: str, verb: str
    ) -> None:
        """Raise AccessDenied unless the principal may ``verb`` the model."""
        if principal.kind == "anonymous":
            return
        if principal.kind == "access-key":
            if principal.key is not None and principal.key.allows(namespace):
                return
            raise errors.AccessDenied(
                f"Access key {principal.name} is not authorized for namespace {namespace}."
            )
        identity = principal.identity
        assert identity is not None
        assert self._tokens is not None
        decision_key = (identity, namespace, name, verb)
        now = self._clock()
        cached = self._decisions.get(decision_key)
        if cached is not None and cached[0] > now:
            allowed = cached[1]
        else:
            allowed = await self._tokens.allowed(
                identity, namespace=namespace, name=name, verb=verb
            )
            _remember(self._decisions, decision_key, (now + self._ttl, allowed))
        if not allowed:
            raise errors.AccessDenied(
                f"User {identity.username} cannot {verb} projectversions.kiu.dev "
                f"{name} in namespace {namespace}."
            )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value
