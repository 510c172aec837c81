"""What the operator needs to know about Nodes, Deployments and unit Pods, read once.

Watch events carry whole objects; the controller keeps only these small facts, so
its memory grows with the number of units, not with the size of their manifests.
Pure functions of a body: no API calls here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kiu.manifests import workload

#: Container waiting reasons that mean the unit cannot start without a change.
_STUCK_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
#: Taints the node lifecycle controller sets on nodes that cannot take new pods.
_UNAVAILABLE_TAINTS = frozenset(
    {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/network-unavailable",
    }
)


def timestamp(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 API timestamp."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in status.get("conditions") or []}


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    zone: str | None
    available: bool
    """Ready and schedulable: a unit placed in its zone can start."""


def node(body: Mapping[str, Any]) -> Node:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    ready = _conditions(status).get("Ready", {}).get("status") == "True"
    blocked = any(
        taint.get("key") in _UNAVAILABLE_TAINTS and taint.get("effect") != "PreferNoSchedule"
        for taint in spec.get("taints") or []
    )
    return Node(
        name=meta["name"],
        zone=(meta.get("labels") or {}).get(workload.TOPOLOGY_ZONE_LABEL),
        available=ready and not spec.get("unschedulable", False) and not blocked,
    )


@dataclass(frozen=True, slots=True)
class Zones:
    """Every zone that has nodes, and those with at least one available node."""

    known: frozenset[str]
    healthy: frozenset[str]


def zones(nodes: Iterable[Node]) -> Zones:
    known: set[str] = set()
    healthy: set[str] = set()
    for each in nodes:
        if each.zone:
            known.add(each.zone)
            if each.available:
                healthy.add(each.zone)
    return Zones(known=frozenset(known), healthy=frozenset(healthy))


@dataclass(frozen=True, slots=True)
class Owned:
    """An object kiu applied for a ProjectVersion, as last seen."""

    kind: str
    name: str
    owner_uid: str | None
    """The uid of the controlling ProjectVersion: only its own objects are ever deleted."""
    zone: str | None
    replicas: int | None
    """Deployments only: the replicas in the spec (what the last apply asked for)."""
    spec_hash: str | None


def owned(body: Mapping[str, Any]) -> Owned:
    meta = body["metadata"]
    labels = meta.get("labels") or {}
    spec = body.get("spec") or {}
    return Owned(
        kind=body.get("kind", ""),
        name=meta["name"],
        owner_uid=next(
            (
                str(ref["uid"])
                for ref in meta.get("ownerReferences") or []
                if ref.get("kind") == "ProjectVersion" and ref.get("controller")
            ),
            None,
        ),
        zone=labels.get(workload.ZONE_LABEL),
        replicas=spec.get("replicas") if "replicas" in spec else None,
        spec_hash=(meta.get("annotations") or {}).get(workload.SPEC_HASH_ANNOTATION),
    )


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit pod: where it is, whether it serves, and what keeps it from serving."""

    name: str
    zone: str | None
    ready: bool
    terminating: bool
    created: float | None
    unschedulable_since: float | None
    """When the scheduler first reported it could not place the pod, if it is pending."""
    failure: Failure | None
    """Why the unit cannot start, as the kubelet reports it (crash loop, image, config)."""


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    """CamelCase, as the kubelet says it: CrashLoopBackOff, ImagePullBackOff, ..."""
    message: str


def unit(body: Mapping[str, Any]) -> Unit:
    meta, status = body["metadata"], body.get("status") or {}
    conditions = _conditions(status)
    terminating = meta.get("deletionTimestamp") is not None
    scheduled = conditions.get("PodScheduled", {})
    unschedulable = (
        scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"
    )
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    return Unit(
        name=meta["name"],
        zone=(meta.get("labels") or {}).get(workload.ZONE_LABEL),
        ready=not terminating and conditions.get("Ready", {}).get("status") == "True",
        terminating=terminating,
        created=timestamp(meta.get("creationTimestamp")),
        unschedulable_since=timestamp(scheduled.get("lastTransitionTime"))
        if unschedulable
        else None,
        failure=_failure(status, statuses),
    )


def owner_label(body: Mapping[str, Any]) -> str | None:
    """The `kiu.dev/projectversion` label of a unit or owned object.

    Pods are owned by ReplicaSets, not by the ProjectVersion, so the label is what
    ties everything to it (compare with `workload.label_value` of the name).
    """
    value = (body["metadata"].get("labels") or {}).get(workload.PROJECT_VERSION_LABEL)
    return str(value) if value is not None else None


def _failure(status: Mapping[str, Any], statuses: list[Mapping[str, Any]]) -> Failure | None:
    if status.get("phase") == "Failed":
        return Failure(
            reason=status.get("reason") or "PodFailed",
            message=status.get("message") or "pod failed",
        )
    for each in statuses:
        waiting = (each.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in _STUCK_REASONS:
            continue
        last = (each.get("lastState") or {}).get("terminated") or {}
        text = f"container {each.get('name')}"
        if "exitCode" in last:
            text += f" exited with code {last['exitCode']}"
        detail = _last_line(last.get("message") or waiting.get("message") or "")
        return Failure(reason=waiting["reason"], message=f"{text}: {detail}" if detail else text)
    return None


def _last_line(message: str) -> str:
    """The last non-empty line: a termination message taken from a log ends with the cause."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else ""
