"""The Kubernetes source: ProjectVersions, their EndpointSlices, keys and replicas.

Watches (through :mod:`kiu.k8s`, the only package that talks to the API):

* ProjectVersions (all namespaces, or the ``--namespace`` ones), parsed with
  :mod:`kiu.api.projectversion`;
* EndpointSlices labelled ``kiu.dev/projectversion`` (the operator labels each
  version's headless Service; the EndpointSlice controller copies the labels):
  their ready endpoints on the port named ``grpc`` are the version's units, so
  a unit that stops being ready leaves the routing table with the next event;
* the access-key Secrets of the credentials namespace: the named ones, each watched
  by name so that RBAC can grant exactly those, or (``access_key_secrets`` None)
  every Secret labelled ``kiu.dev/access-key`` there, which needs list on all of them;
* the EndpointSlices of the gateway's own Service: their ready endpoints are the
  replicas that share each model's TPS limit (:mod:`kiu.gateway.peers`);
* the object-storage Secret, if one is named.

Start and Stop merge-patch the ProjectVersion's spec; a call to a model with no
ready unit merge-patches its activation annotation (:mod:`kiu.gateway.hold`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from kiu import sigv4
from kiu.api import projectversion
from kiu.api.errors import ParseError
from kiu.gateway import auth, catalog, errors, upstream
from kiu.k8s import client, credentials, discovery, projectversions
from kiu.k8s import errors as k8s_errors
from kiu.manifests import workload

log = logging.getLogger(__name__)

GRPC_PORT_NAME = "grpc"
GRPC_PORT = 8001


async def connect(*, kubeconfig: str | None = None) -> Connection:
    return Connection(await client.connect(kubeconfig=kubeconfig))


class Connection:
    """An open connection to the API server (opaque to the rest of the gateway)."""

    def __init__(self, api: Any) -> None:
        self._api = api

    async def close(self) -> None:
        await self._api.close()

    async def own_zone(self) -> str:
        """The zone of the node this pod runs on ($NODE_NAME from the downward API)."""
        node = os.environ.get("NODE_NAME")
        if not node:
            return ""
        try:
            return await discovery.node_zone(self._api, node=node)
        except k8s_errors.KubernetesError as exc:
            log.warning("cannot read the zone of node %s: %s", node, exc)
            return ""

    def source(
        self,
        *,
        namespaces: list[str] | None,
        gateway_namespace: str,
        gateway_service: str,
        credentials_namespace: str,
        access_key_secrets: list[str] | None = None,
        s3_secret: str | None,
        s3_namespace_secret: str | None = None,
    ) -> Source:
        return Source(
            self._api,
            namespaces=namespaces,
            gateway_namespace=gateway_namespace,
            gateway_service=gateway_service,
            credentials_namespace=credentials_namespace,
            access_key_secrets=access_key_secrets,
            s3_secret=s3_secret,
            s3_namespace_secret=s3_namespace_secret,
        )

    def tokens(self) -> Tokens:
        return Tokens(self._api)


class Tokens:
    """TokenReview and SubjectAccessReview for :class:`kiu.gateway.auth.Authenticator`."""

    def __init__(self, api: Any) -> None:
        self._api = api

    async def review(self, token: str) -> auth.Identity | None:
        try:
            user = await credentials.review_token(self._api, token)
        except k8s_errors.KubernetesError as exc:
            log.error("TokenReview failed: %s", exc.message)
            raise errors.InternalServerError() from None
        if user is None:
            return None
        return auth.Identity(
            username=user.username,
            uid=user.uid,
            groups=user.groups,
            extra=tuple(sorted(user.extra.items())),
        )

    async def allowed(
        self, identity: auth.Identity, *, namespace: str, name: str, verb: str
    ) -> bool:
        user = credentials.User(
            username=identity.username,
            uid=identity.uid,
            groups=identity.groups,
            extra=dict(identity.extra),
        )
        try:
            return await credentials.may(
                self._api,
                user,
                verb=verb,
                group=projectversion.GROUP,
                resource=projectversion.PLURAL,
                namespace=namespace,
                name=name,
            )
        except k8s_errors.KubernetesError as exc:
            log.error("SubjectAccessReview failed: %s", exc.message)
            raise errors.InternalServerError() from None


class Source:
    """The :class:`kiu.gateway.catalog.Source` backed by the Kubernetes API."""

    def __init__(
        self,
        api: Any,
        *,
        namespaces: list[str] | None,
        gateway_namespace: str,
        gateway_service: str,
        credentials_namespace: str,
        access_key_secrets: list[str] | None = None,
        s3_secret: str | None,
        s3_namespace_secret: str | None = None,
    ) -> None:
        self._api = api
        self._namespaces: list[str | None] = list(namespaces) if namespaces else [None]
        self._gateway_namespace = gateway_namespace
        self._gateway_service = gateway_service
        self._credentials_namespace = credentials_namespace
        self._access_key_secrets = access_key_secrets
        self._s3_secret = s3_secret
        self._s3_namespace_secret = s3_namespace_secret
        self._stores: dict[str, sigv4.Credentials] = {}
        self._catalog: catalog.Catalog | None = None
        self._versions: dict[tuple[str, str], projectversion.ProjectVersion] = {}
        # (namespace, Service) -> the version it serves, and -> its slices by name
        self._by_service: dict[tuple[str, str], tuple[str, str]] = {}
        self._slices: dict[tuple[str, str], dict[str, discovery.EndpointSlice]] = {}
        self._slice_service: dict[tuple[str, str], tuple[str, str]] = {}
        self._keys: dict[tuple[str, str], credentials.AccessKey] = {}
        self._replica_slices: dict[str, tuple[discovery.Address, ...]] = {}
        self._pending: set[str] = set()

    async def run(self, catalog: catalog.Catalog) -> None:
        self._catalog = catalog
        api = self._api
        watches: list[tuple[str, AsyncIterator[Any], Callable[[Any], None]]] = []
        for namespace in self._namespaces:
            where = namespace or "*"
            versions = discovery.reflect(api, projectversions.path(namespace=namespace))
            slices = discovery.reflect(
                api, _slices_path(namespace), label_selector=workload.PROJECT_VERSION_LABEL
            )
            watches.append(
                (
                    f"projectversions/{where}",
                    versions,
                    functools.partial(self._on_version, namespace),
                )
            )
            watches.append(
                (f"endpointslices/{where}", slices, functools.partial(self._on_slice, namespace))
            )
        secrets = discovery.collection(
            group="", version="v1", plural="secrets", namespace=self._credentials_namespace
        )
        if self._access_key_secrets is not None:
            for name in self._access_key_secrets:
                named = discovery.reflect(api, secrets, field_selector=f"metadata.name={name}")
                watches.append((f"access-key/{name}", named, functools.partial(self._on_key, name)))
        else:
            keys = discovery.reflect(api, secrets, label_selector=credentials.ACCESS_KEY_LABEL)
            watches.append(("access-keys", keys, functools.partial(self._on_key, None)))
        replicas = discovery.reflect(
            api,
            _slices_path(self._gateway_namespace),
            label_selector=f"{discovery.SERVICE_NAME_LABEL}={self._gateway_service}",
        )
        watches.append(("gateway-replicas", replicas, self._on_replica_slice))
        if self._s3_secret:
            secrets = discovery.collection(
                group="", version="v1", plural="secrets", namespace=self._gateway_namespace
            )
            store = discovery.reflect(
                api, secrets, field_selector=f"metadata.name={self._s3_secret}"
            )
            watches.append(("object-store-secret", store, self._on_store_secret))
        if self._s3_namespace_secret:
            for namespace in self._namespaces:
                secrets = discovery.collection(
                    group="", version="v1", plural="secrets", namespace=namespace
                )
                own = discovery.reflect(
                    api, secrets, field_selector=f"metadata.name={self._s3_namespace_secret}"
                )
                watches.append(
                    (
                        f"object-store-secrets/{namespace or '*'}",
                        own,
                        functools.partial(self._on_namespace_store, namespace),
                    )
                )
        self._pending = {name for name, _, _ in watches}
        async with asyncio.TaskGroup() as group:
            for name, stream, handler in watches:
                group.create_task(self._follow(name, stream, handler), name=f"kiu-watch-{name}")

    async def _follow(
        self, name: str, stream: AsyncIterator[Any], handler: Callable[[Any], None]
    ) -> None:
        async for event in stream:
            try:
                handler(event)
            except Exception:
                log.exception("cannot apply a %s event", name)
            if isinstance(event, discovery.Listed) and name in self._pending:
                self._pending.discard(name)
                if not self._pending and self._catalog is not None:
                    self._catalog.synced = True
                    log.info("catalog synced: %d project versions", len(self._versions))

    async def set_state(
        self,
        *,
        namespace: str,
        name: str,
        state: catalog.State,
        min_units: int | None = None,
        max_units: int | None = None,
    ) -> None:
        try:
            await projectversions.set_state(
                self._api,
                namespace=namespace,
                name=name,
                state=state,
                min_units=min_units,
                max_units=max_units,
            )
        except k8s_errors.NotFound:
            raise errors.ResourceNotFound(f"ProjectVersion {name} does not exist.") from None
        except k8s_errors.Forbidden as exc:
            log.error("cannot patch ProjectVersion %s/%s: %s", namespace, name, exc.message)
            raise errors.AccessDenied("The gateway may not change this ProjectVersion.") from None
        except k8s_errors.KubernetesError as exc:
            log.error("cannot patch ProjectVersion %s/%s: %s", namespace, name, exc.message)
            raise errors.InternalServerError() from None

    async def activate(self, namespace: str, name: str) -> None:
        """Ask the operator for a unit now: the model has a call and no ready unit."""
        await projectversions.request_activation(
            self._api, namespace=namespace, name=name, at=time.time()
        )

    # --- events ----------------------------------------------------------------------

    def _on_version(self, scope: str | None, event: discovery.Listed | discovery.Changed) -> None:
        """Apply a ProjectVersion event of the watch of ``scope`` (a namespace, or all)."""
        if isinstance(event, discovery.Listed):
            before = {key for key in self._versions if scope is None or key[0] == scope}
            seen = {key for body in event.items if (key := self._store(body)) is not None}
            for key in before - seen:
                self._forget(key)
            for key in before | seen:
                self._publish(key)
            return
        key = _key(event.object)
        if event.type == "DELETED":
            self._forget(key)
        else:
            self._store(event.object)
        self._publish(key)

    def _store(self, body: dict[str, Any]) -> tuple[str, str] | None:
        key = _key(body)
        try:
            version = projectversion.parse(body)
        except ParseError as exc:
            log.warning("ignoring ProjectVersion %s/%s: %s", *key, exc.message)
            self._forget(key)
            return None
        self._versions[key] = version
        self._by_service[(key[0], _service(version))] = key
        return key

    def _forget(self, key: tuple[str, str]) -> None:
        version = self._versions.pop(key, None)
        if version is not None:
            self._by_service.pop((key[0], _service(version)), None)

    def _on_slice(self, scope: str | None, event: discovery.Listed | discovery.Changed) -> None:
        """Apply an EndpointSlice event of the watch of ``scope`` (a namespace, or all)."""
        if isinstance(event, discovery.Listed):
            touched = {s for s in self._slices if scope is None or s[0] == scope}
            for service in touched:
                for slice_name in self._slices.pop(service):
                    self._slice_service.pop((service[0], slice_name), None)
            bodies, deleted = event.items, False
        else:
            touched = set()
            bodies, deleted = [event.object], event.type == "DELETED"
        for body in bodies:
            parsed = discovery.endpoint_slice(
                body, port_name=GRPC_PORT_NAME, default_port=GRPC_PORT
            )
            slice_key = (parsed.namespace, parsed.name)
            previous = self._slice_service.pop(slice_key, None)
            if previous is not None:
                self._slices.get(previous, {}).pop(parsed.name, None)
                touched.add(previous)
            service = (parsed.namespace, parsed.service)
            touched.add(service)
            if not deleted:
                self._slices.setdefault(service, {})[parsed.name] = parsed
                self._slice_service[slice_key] = service
        for service in touched:
            if service in self._slices and not self._slices[service]:
                del self._slices[service]
            key = self._by_service.get(service)
            if key is not None:
                self._publish(key)

    def _on_key(self, only: str | None, event: discovery.Listed | discovery.Changed) -> None:
        """Keep the keys current; a relist of the watch of Secret `only` replaces it alone."""
        if isinstance(event, discovery.Listed):
            self._keys = {k: v for k, v in self._keys.items() if only is not None and k[1] != only}
            bodies = event.items
        elif event.type == "DELETED":
            self._keys.pop(_key(event.object), None)
            bodies = []
        else:
            bodies = [event.object]
        for body in bodies:
            key = credentials.access_key(body)
            if key is None:
                self._keys.pop(_key(body), None)
                log.warning(
                    "access-key Secret %s lacks accessKeyId or secretAccessKey", _key(body)[1]
                )
            else:
                self._keys[_key(body)] = key
        if self._catalog is not None:
            self._catalog.set_access_keys(
                catalog.AccessKey(
                    credentials=sigv4.Credentials(k.access_key_id, k.secret_access_key),
                    namespaces=k.namespaces,
                )
                for k in self._keys.values()
            )

    def _on_replica_slice(self, event: discovery.Listed | discovery.Changed) -> None:
        if isinstance(event, discovery.Listed):
            self._replica_slices = {}
            bodies = event.items
        elif event.type == "DELETED":
            self._replica_slices.pop(_key(event.object)[1], None)
            bodies = []
        else:
            bodies = [event.object]
        for body in bodies:
            parsed = discovery.endpoint_slice(body, port_name="", default_port=0)
            self._replica_slices[parsed.name] = parsed.addresses
        if self._catalog is not None:
            addresses = [a for listed in self._replica_slices.values() for a in listed]
            ready = {a.host for a in addresses if a.ready}
            own = os.environ.get("POD_IP")
            if own:  # not listed yet while it starts: it still takes part
                ready.add(own)
            # Every listed replica is a peer, ready or not: one that is frozen or draining
            # at shutdown may still admit calls on its open connections, so it keeps its
            # share until it refuses connections (it exited) or leaves the slice.
            self._catalog.set_replicas(max(1, len(ready)), hosts={a.host for a in addresses})

    def _on_store_secret(self, event: discovery.Listed | discovery.Changed) -> None:
        if self._catalog is None:
            return
        if isinstance(event, discovery.Listed):
            body = event.items[0] if event.items else None
        else:
            body = None if event.type == "DELETED" else event.object
        key = credentials.object_store_key(body) if body is not None else None
        self._catalog.s3_credentials = (
            sigv4.Credentials(key.access_key_id, key.secret_access_key) if key else None
        )

    def _on_namespace_store(
        self, scope: str | None, event: discovery.Listed | discovery.Changed
    ) -> None:
        """Keep each namespace's own object-storage credentials (watch of ``scope``)."""
        if isinstance(event, discovery.Listed):
            self._stores = {
                n: c for n, c in self._stores.items() if scope is not None and n != scope
            }
            bodies = event.items
        elif event.type == "DELETED":
            self._stores.pop(_key(event.object)[0], None)
            bodies = []
        else:
            bodies = [event.object]
        for body in bodies:
            namespace = _key(body)[0]
            key = credentials.object_store_key(body)
            if key is None:
                self._stores.pop(namespace, None)
            else:
                self._stores[namespace] = sigv4.Credentials(
                    key.access_key_id, key.secret_access_key
                )
        if self._catalog is not None:
            self._catalog.s3_namespace_credentials = dict(self._stores)

    def _publish(self, key: tuple[str, str]) -> None:
        if self._catalog is None:
            return
        version = self._versions.get(key)
        if version is None:
            self._catalog.remove(*key)
            return
        self._catalog.put(self._spec(version))

    def _spec(self, version: projectversion.ProjectVersion) -> catalog.ModelSpec:
        namespace, name = version.metadata.namespace, version.metadata.name
        slices = self._slices.get((namespace, _service(version)), {})
        units = tuple(
            sorted(
                {
                    upstream.Endpoint(a.host, a.port, a.zone)
                    for s in slices.values()
                    for a in s.addresses
                    if a.ready
                },
                key=lambda e: (e.zone, e.host, e.port),
            )
        )
        spec, status = version.spec, version.status
        phase = status.status or ("STARTING" if spec.state == "Running" else "STOPPED")
        arn = version.arn
        return catalog.ModelSpec(
            namespace=namespace,
            name=name,
            project=spec.project,
            created_ms=arn.created_ms,
            arn=str(arn),
            state=spec.state,
            status=phase,
            status_message=status.status_message or "",
            min_units=spec.min_inference_units,
            max_units=spec.max_inference_units,
            tps=spec.inference_unit.tps,
            task=spec.model.task,
            model=spec.model.name,
            units=units,
        )


def _service(version: projectversion.ProjectVersion) -> str:
    return workload.service_name(project_version=version.metadata.name)


def _slices_path(namespace: str | None) -> str:
    return discovery.collection(
        group="discovery.k8s.io", version="v1", plural="endpointslices", namespace=namespace
    )


def _key(body: dict[str, Any]) -> tuple[str, str]:
    metadata = body.get("metadata", {})
    return metadata.get("namespace", ""), metadata.get("name", "")
