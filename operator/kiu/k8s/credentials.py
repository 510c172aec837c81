"""Credentials kept in Kubernetes: access-key Secrets, TokenReview, SubjectAccessReview.

An access key is a Secret labelled ``kiu.dev/access-key`` (any value) in the
gateway's credentials namespace, with data keys::

    accessKeyId:      AKIA...            (the id clients sign with)
    secretAccessKey:  ...                (the signing secret)
    namespaces:       retail,shipping    (where the key may act; "*" for all)

An object-storage Secret (``--s3-secret``) holds ``accessKeyId`` and
``secretAccessKey`` (or ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``).
Secret values never reach logs or exception messages.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client as k8s_client

from kiu.k8s import rest

ACCESS_KEY_LABEL = "kiu.dev/access-key"
SECRETS = "secrets"


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    namespaces: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class User:
    """A user as a TokenReview reports it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _data(body: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in (body.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value, validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            continue
    for key, value in (body.get("stringData") or {}).items():
        out[key] = str(value).strip()
    return out


def access_key(body: Mapping[str, Any]) -> AccessKey | None:
    """The access key a Secret holds, or None if it lacks the id or the secret."""
    data = _data(body)
    key_id, secret = data.get("accessKeyId"), data.get("secretAccessKey")
    if not key_id or not secret:
        return None
    scopes = frozenset(n.strip() for n in data.get("namespaces", "").split(",") if n.strip())
    return AccessKey(key_id, secret, scopes)


def object_store_key(body: Mapping[str, Any]) -> AccessKey | None:
    """Object-storage credentials from a Secret, or None if incomplete."""
    data = _data(body)
    key_id = data.get("accessKeyId") or data.get("AWS_ACCESS_KEY_ID")
    secret = data.get("secretAccessKey") or data.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return None
    return AccessKey(key_id, secret)


async def review_token(api: k8s_client.ApiClient, token: str) -> User | None:
    """TokenReview: the user behind a bearer token, or None if it is not valid.

    Raises a :mod:`kiu.k8s.errors` exception if the API cannot answer.
    """
    answer = await rest.call(
        api,
        method="POST",
        path="/apis/authentication.k8s.io/v1/tokenreviews",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        },
    )
    status = answer.get("status") or {}
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    return User(
        username=str(user.get("username", "")),
        uid=str(user.get("uid", "")),
        groups=tuple(user.get("groups") or ()),
        extra={k: tuple(v) for k, v in (user.get("extra") or {}).items()},
    )


async def may(
    api: k8s_client.ApiClient,
    user: User,
    *,
    verb: str,
    group: str,
    resource: str,
    namespace: str,
    name: str = "",
) -> bool:
    """SubjectAccessReview: whether the user may ``verb`` the resource."""
    attributes: dict[str, str] = {
        "verb": verb,
        "group": group,
        "resource": resource,
        "namespace": namespace,
    }
    if name:
        attributes["name"] = name
    spec: dict[str, Any] = {
        "user": user.username,
        "groups": list(user.groups),
        "resourceAttributes": attributes,
    }
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    answer = await rest.call(
        api,
        method="POST",
        path="/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        },
    )
    return bool((answer.get("status") or {}).get("allowed"))
