"""The objects that run one ProjectVersion: a Deployment per zone, a Service, a PDB.

One Deployment per zone gives exact per-zone counts: its ReplicaSet replaces a
failed unit in the same zone, and a scale-down removes units from the zone the
split says, which a single Deployment with topology spread does not guarantee.
Every builder is pure and deterministic (same input, same dict), so applying the
result again changes nothing, and the replica count lives outside the pod
template, so resizing never restarts a running unit.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

#: The label that names the ProjectVersion a pod, Deployment, Service or PDB belongs to.
PROJECT_VERSION_LABEL = "kiu.dev/projectversion"
#: The label that names the zone of a unit and of its Deployment.
ZONE_LABEL = "kiu.dev/zone"
#: The well-known node label a zone's Deployment selects nodes by.
TOPOLOGY_ZONE_LABEL = "topology.kubernetes.io/zone"
#: The annotation holding a hash of the applied object: equal hash, nothing to apply.
SPEC_HASH_ANNOTATION = "kiu.dev/spec-hash"

APP_NAME = "kiu"
UNIT_COMPONENT = "inference-unit"
MANAGER = "kiu"

#: Service port appProtocol by unit port name, for meshes and gateways that route by it.
_APP_PROTOCOLS = {"grpc": "grpc", "http": "http"}

_NAME_LIMIT = 63
_HASH_LENGTH = 8
_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:_HASH_LENGTH]


def _fit(value: str, *, original: str) -> str:
    """Truncate to the name limit, ending in a hash of `original` so distinct inputs stay
    distinct."""
    keep = _NAME_LIMIT - _HASH_LENGTH - 1
    return f"{value[:keep].rstrip('-_.')}-{_digest(original)}"


def label_value(value: str) -> str:
    """`value` if it is a valid label value, else a valid one derived from it with a hash."""
    if len(value) <= _NAME_LIMIT and _LABEL_VALUE.fullmatch(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.") or "x"
    return _fit(cleaned, original=value)


def _dns_label(value: str, *, pattern: re.Pattern[str]) -> str:
    """`value` if it is a DNS label of `pattern`, else a valid one derived from it with a hash."""
    if len(value) <= _NAME_LIMIT and pattern.fullmatch(value):
        return value
    cleaned = _INVALID_NAME_CHARS.sub("-", value.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = f"pv-{cleaned}"
    return _fit(cleaned, original=value)


def deployment_name(*, project_version: str, zone: str) -> str:
    """`<name>-<zone>`; cleaned and hashed when that is not a 63-char DNS label.

    63, not the 253 a Deployment name may have, because the name reaches pod
    host names and ReplicaSet-derived labels.
    """
    return _dns_label(f"{project_version}-{zone}", pattern=_DNS_1123_LABEL)


def service_name(*, project_version: str) -> str:
    """The ProjectVersion's own name when it is a valid Service name (it usually is)."""
    return _dns_label(project_version, pattern=_DNS_1035_LABEL)


def pdb_name(*, project_version: str) -> str:
    return service_name(project_version=project_version)


def selector(*, project_version: str, zone: str | None = None) -> dict[str, str]:
    """The labels that select a ProjectVersion's units, or one zone's units.

    Deployment selectors are immutable, so this set never changes shape.
    """
    labels = {
        "app.kubernetes.io/component": UNIT_COMPONENT,
        PROJECT_VERSION_LABEL: label_value(project_version),
    }
    if zone is not None:
        labels[ZONE_LABEL] = label_value(zone)
    return labels


def labels(*, project_version: str, project: str, zone: str | None = None) -> dict[str, str]:
    """The recommended `app.kubernetes.io/*` labels plus the kiu selector labels."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": label_value(project_version),
        "app.kubernetes.io/part-of": label_value(project),
        "app.kubernetes.io/managed-by": MANAGER,
        **selector(project_version=project_version, zone=zone),
    }


def owner_reference(*, api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """A controller reference: the garbage collector deletes the owned objects with the owner,
    without a finalizer and without the operator running."""
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


def spec_hash(obj: Mapping[str, Any]) -> str:
    """A stable hash of an object's content, to skip applying what is already there."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _stamped(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = spec_hash(obj)
    return obj


def _metadata(
    *, name: str, namespace: str, labels: Mapping[str, str], owner: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [dict(owner)],
    }


def deployment(
    *,
    project_version: str,
    project: str,
    namespace: str,
    zone: str,
    replicas: int,
    pod_template: Mapping[str, Any],
    owner: Mapping[str, Any],
) -> dict[str, Any]:
    """The Deployment of one zone's units.

    The pod template gets the zone's labels and a node selector on the zone label.
    RollingUpdate with maxSurge 1 and maxUnavailable 0: a spec change adds a new unit
    before removing an old one, so it never takes capacity away.
    """
    zone_labels = labels(project_version=project_version, project=project, zone=zone)
    template = copy.deepcopy(dict(pod_template))
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**template_meta.get("labels", {}), **zone_labels}
    pod_spec = template.setdefault("spec", {})
    pod_spec["nodeSelector"] = {**pod_spec.get("nodeSelector", {}), TOPOLOGY_ZONE_LABEL: zone}
    return _stamped(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(
                name=deployment_name(project_version=project_version, zone=zone),
                namespace=namespace,
                labels=zone_labels,
                owner=owner,
            ),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector(project_version=project_version, zone=zone)},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "revisionHistoryLimit": 2,
                "template": template,
            },
        }
    )


def service(
    *,
    project_version: str,
    project: str,
    namespace: str,
    pod_template: Mapping[str, Any],
    owner: Mapping[str, Any],
) -> dict[str, Any]:
    """A headless Service over all the units, with every named port of the unit containers.

    Headless because the gateway picks a unit itself (fewest requests in flight) from
    the EndpointSlices: a virtual IP would add a proxy hop and node-level rules per
    model for nothing. Only ready units are published.
    """
    containers = pod_template.get("spec", {}).get("containers", [])
    ports = [
        {
            "name": port["name"],
            "port": port["containerPort"],
            "targetPort": port["name"],
            "protocol": port.get("protocol", "TCP"),
            **(
                {"appProtocol": _APP_PROTOCOLS[port["name"]]}
                if port["name"] in _APP_PROTOCOLS
                else {}
            ),
        }
        for container in containers
        for port in container.get("ports", [])
        if "name" in port
    ]
    return _stamped(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(
                name=service_name(project_version=project_version),
                namespace=namespace,
                labels=labels(project_version=project_version, project=project),
                owner=owner,
            ),
            "spec": {
                "clusterIP": "None",
                "selector": selector(project_version=project_version),
                "ports": ports,
                "publishNotReadyAddresses": False,
            },
        }
    )


def pod_disruption_budget(
    *,
    project_version: str,
    project: str,
    namespace: str,
    owner: Mapping[str, Any],
) -> dict[str, Any]:
    """Voluntary disruptions (node drains) take one unit at a time.

    Units that are not ready may always be evicted: they serve nothing, and keeping
    them would block a drain for no capacity gain.
    """
    return _stamped(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(
                name=pdb_name(project_version=project_version),
                namespace=namespace,
                labels=labels(project_version=project_version, project=project),
                owner=owner,
            ),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": selector(project_version=project_version)},
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        }
    )
