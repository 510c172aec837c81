"""kopf wiring: what the operator watches, and what each watch event does.

Only event handlers and indices, no change handlers, daemons or timers: those
would make kopf put a finalizer on every ProjectVersion, and a finalizer blocks
deletion while the operator is down. Owner references make the garbage
collector delete a version's objects instead.

The indices are the operator's caches. kopf holds every handler back until all
of them are fully listed, so the first reconcile after a start already sees
every Deployment and unit: a restart creates nothing twice and scales nothing
down for want of information. Pods, Deployments, Services and PDBs are watched
with a server-side label selector, so the operator never sees pods it does not
own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kiu.api import projectversion
from kiu.controller import manager, reconciler
from kiu.k8s import observations, projectversions
from kiu.manifests import workload

_OWNED = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("policy", "v1", "poddisruptionbudgets"),
)
_OWNED_LABEL = {workload.PROJECT_VERSION_LABEL: kopf.PRESENT}


def settings() -> kopf.OperatorSettings:
    """kopf settings: server-side selectors, no bookkeeping in status, no kopf Events."""
    config = kopf.OperatorSettings()
    for group, version, plural in (*_OWNED, ("", "v1", "pods")):
        config.watching.label_selectors[_selector(group, version, plural)] = (
            workload.PROJECT_VERSION_LABEL
        )
    # The CRD prunes unknown status fields: kopf keeps what little it stores in annotations.
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kiu.dev")
    # Events are posted by the reconciler, with reasons people can act on.
    config.posting.enabled = False
    # The CRD is installed before the operator starts: no need to watch CRDs or namespaces.
    config.scanning.disabled = True
    return config


def _selector(group: str, version: str, plural: str) -> tuple[str, str, str] | tuple[str, str]:
    return ("v1", plural) if group == "" else (group, version, plural)


def registry(operator: manager.Manager) -> kopf.OperatorRegistry:
    """A registry with the operator's handlers, bound to `operator`."""
    handlers = kopf.OperatorRegistry()
    kopf.on.login(registry=handlers)(kopf.login_via_async_client)

    @kopf.index(
        projectversion.GROUP,
        projectversion.VERSION,
        projectversion.PLURAL,
        id="projectversions",
        registry=handlers,
    )
    def index_projectversions(
        namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> dict[reconciler.Key, Mapping[str, Any]]:
        return {(namespace or "", name): dict(body)}

    @kopf.index("v1", "pods", id="units", labels=_OWNED_LABEL, registry=handlers)
    def index_units(
        namespace: str | None, body: kopf.Body, **_: Any
    ) -> dict[reconciler.Key, observations.Unit]:
        return {_key(namespace, body): observations.unit(body)}

    @kopf.index("v1", "nodes", id="nodes", registry=handlers)
    def index_nodes(body: kopf.Body, **_: Any) -> dict[str, observations.Node]:
        return {"nodes": observations.node(body)}

    for group, version, plural in _OWNED:

        @kopf.index(
            *_selector(group, version, plural), id=plural, labels=_OWNED_LABEL, registry=handlers
        )
        def index_owned(
            namespace: str | None, body: kopf.Body, **_: Any
        ) -> dict[reconciler.Key, observations.Owned]:
            return {_key(namespace, body): observations.owned(body)}

        @kopf.on.event(
            *_selector(group, version, plural),
            id=f"{plural}-event",
            labels=_OWNED_LABEL,
            registry=handlers,
        )
        def owned_event(namespace: str | None, body: kopf.Body, **_: Any) -> None:
            operator.owned_event(_key(namespace, body))

    @kopf.on.event("v1", "pods", id="units-event", labels=_OWNED_LABEL, registry=handlers)
    def unit_event(namespace: str | None, body: kopf.Body, **_: Any) -> None:
        operator.owned_event(_key(namespace, body))

    @kopf.on.event("v1", "nodes", id="nodes-event", registry=handlers)
    def node_event(**kwargs: Any) -> None:
        nodes: kopf.Index[str, observations.Node] = kwargs["nodes"]
        operator.nodes_event(frozenset(nodes.get("nodes", ())))

    @kopf.on.event(
        projectversion.GROUP,
        projectversion.VERSION,
        projectversion.PLURAL,
        id="projectversions-event",
        registry=handlers,
    )
    def projectversion_event(
        type: str | None, namespace: str | None, name: str, meta: kopf.Meta, **_: Any
    ) -> None:
        key = (namespace or "", name)
        if type == "DELETED":
            operator.projectversion_deleted(key)
            return
        operator.projectversion_event(
            key=key,
            uid=str(meta.uid),
            generation=int(meta.get("generation") or 0),
            deleting=meta.deletion_timestamp is not None,
            activation=projectversions.activation_requested_at(meta),
        )

    @kopf.on.startup(id="start", registry=handlers)
    async def start(**indices: Any) -> None:
        """Hand the (still empty) indices to the reconciler and start its loops.

        kopf runs this before it starts watching; the indices fill up as it lists.
        """
        operator.reconciler.caches = reconciler.Caches(
            projectversions=indices["projectversions"],
            units=indices["units"],
            owned=tuple(indices[plural] for _, _, plural in _OWNED),
            nodes=indices["nodes"],
        )
        operator.start()

    @kopf.on.cleanup(id="stop", registry=handlers)
    async def stop(**_: Any) -> None:
        await operator.stop()

    return handlers


def _key(namespace: str | None, body: kopf.Body) -> reconciler.Key:
    """The ProjectVersion key of a unit or owned object, from its label."""
    return (namespace or "", observations.owner_label(body) or "")
