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
from kiu.policy import feasibility

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


def timestamp(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 API timestamp."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in status.get("conditions") or []}


#: A node as placement sees it (kiu.policy.feasibility): zone, health, labels, taints,
#: extended resources.
Node = feasibility.Node


def node(body: Mapping[str, Any]) -> Node:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    ready = _conditions(status).get("Ready", {}).get("status") == "True"
    taints = tuple(
        feasibility.Taint(
            key=str(taint.get("key", "")),
            value=str(taint.get("value", "")),
            effect=str(taint.get("effect", "")),
        )
        for taint in spec.get("taints") or []
    )
    blocked = any(
        taint.key in feasibility.HEALTH_TAINTS and taint.effect != "PreferNoSchedule"
        for taint in taints
    )
    labels = meta.get("labels") or {}
    return Node(
        name=meta["name"],
        zone=labels.get(workload.TOPOLOGY_ZONE_LABEL),
        available=ready and not spec.get("unschedulable", False) and not blocked,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        taints=taints,
        allocatable=tuple(
            sorted(
                (str(name), str(value))
                for name, value in (status.get("allocatable") or {}).items()
                if feasibility.is_extended(str(name))
            )
        ),
    )


def needs(pod_template: Mapping[str, Any]) -> feasibility.Needs:
    """What a unit of `pod_template` asks of its node (node selector, required node
    affinity, tolerations, extended resources), before its zone is added."""
    spec = pod_template.get("spec") or {}
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    extended: dict[str, str] = {}
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, value in wanted.items():
            if feasibility.is_extended(name):
                total = feasibility.quantity(extended.get(name, "0")) + feasibility.quantity(value)
                extended[name] = str(total)
    return feasibility.Needs(
        node_selector=dict(spec.get("nodeSelector") or {}),
        terms=tuple(
            feasibility.Term(
                expressions=_requirements(term.get("matchExpressions")),
                fields=_requirements(term.get("matchFields")),
            )
            for term in required.get("nodeSelectorTerms") or []
        ),
        tolerations=tuple(
            feasibility.Toleration(
                key=str(t.get("key") or ""),
                operator=str(t.get("operator") or "Equal"),
                value=str(t.get("value") or ""),
                effect=str(t.get("effect") or ""),
            )
            for t in spec.get("tolerations") or []
        ),
        extended=extended,
    )


def _requirements(raw: Iterable[Mapping[str, Any]] | None) -> tuple[feasibility.Requirement, ...]:
    return tuple(
        feasibility.Requirement(
            key=str(r["key"]),
            operator=str(r["operator"]),
            values=tuple(str(v) for v in r.get("values") or ()),
        )
        for r in raw or ()
    )


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
    no_room: str | None = None
    """The scheduler's message when it is pending for lack of resources (its zone is full)."""


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
    message = str(scheduled.get("message") or "")
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
        no_room=message if unschedulable and "Insufficient " in message else None,
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
