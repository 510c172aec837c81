"""Which zones can run a unit at all: the scheduler's static filters, per zone.

A zone takes units only if at least one of its nodes could run one: its labels
satisfy the unit's node selector and required node affinity, the unit tolerates
its NoSchedule and NoExecute taints, and its allocatable holds one unit's worth of
every extended resource the unit requests (a GPU). Otherwise its Deployment would
never schedule: the zone is skipped, and the reason says what no node offers.

Feasibility is static: a feasible zone whose feasible nodes are all down is lost,
not skipped (the outage policy decides, see `zones`), and the taints the node
lifecycle controller sets on failing or cordoned nodes count as health, not fit.
CPU and memory are left to the scheduler: they fill and free with every pod, so a
zone short of them is full for a while, not unfit.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

#: Taints the node lifecycle controller sets on nodes that cannot take new pods (health).
HEALTH_TAINTS = frozenset(
    {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/network-unavailable",
    }
)
#: Taint effects that keep a pod off a node (PreferNoSchedule only discourages).
_BLOCKING = frozenset({"NoSchedule", "NoExecute"})
_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)")
_LISTED_REASONS = 3


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return (
            f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"
        )


@dataclass(frozen=True, slots=True)
class Toleration:
    """core/v1 Toleration; an empty key with Exists tolerates every taint."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        """As the scheduler's TolerationsTolerateTaint."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return bool(self.key) and self.value == taint.value


@dataclass(frozen=True, slots=True)
class Requirement:
    """One node selector requirement (matchExpressions, or matchFields on metadata.name)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        match self.operator:
            case "In":
                return present and value in self.values
            case "NotIn":
                return not present or value not in self.values
            case "Exists":
                return present
            case "DoesNotExist":
                return not present
            case "Gt" | "Lt":
                if not present or len(self.values) != 1:
                    return False
                try:
                    have, bound = int(value), int(self.values[0])
                except ValueError:
                    return False
                return have > bound if self.operator == "Gt" else have < bound
        return False


@dataclass(frozen=True, slots=True)
class Term:
    """A node selector term: every requirement holds. An empty term matches no node."""

    expressions: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()

    def matches(self, *, name: str, labels: Mapping[str, str]) -> bool:
        if not self.expressions and not self.fields:
            return False
        return all(r.matches(labels) for r in self.expressions) and all(
            r.matches({"metadata.name": name}) for r in self.fields
        )


@dataclass(frozen=True, slots=True)
class Node:
    """What placement needs to know about one node; hashable, so a change is noticed."""

    name: str
    zone: str | None
    available: bool
    """Ready and schedulable: a unit placed in its zone can start."""
    labels: tuple[tuple[str, str], ...] = ()
    taints: tuple[Taint, ...] = ()
    allocatable: tuple[tuple[str, str], ...] = ()
    """Extended resources only (name, quantity), e.g. ("nvidia.com/gpu", "4")."""


@dataclass(frozen=True, slots=True)
class Needs:
    """What a unit pod asks of its node (from its pod template, before the zone is added)."""

    node_selector: Mapping[str, str] = field(default_factory=dict)
    terms: tuple[Term, ...] = ()
    """Required node affinity: one term must match; none at all means no constraint."""
    tolerations: tuple[Toleration, ...] = ()
    extended: Mapping[str, str] = field(default_factory=dict)
    """Extended resources one unit requests (name, quantity)."""


@dataclass(frozen=True, slots=True)
class Fit:
    """Zones with nodes, those that can run a unit, the feasible ones that are healthy, and
    why each other zone is skipped (zone -> reason)."""

    known: frozenset[str]
    feasible: frozenset[str]
    healthy: frozenset[str]
    skipped: Mapping[str, str]


def is_extended(resource: str) -> bool:
    """An extended resource: a qualified name outside kubernetes.io (nvidia.com/gpu)."""
    domain, slash, _ = resource.partition("/")
    return bool(slash) and not (
        domain == "kubernetes.io"
        or domain.endswith(".kubernetes.io")
        or resource.startswith("hugepages-")
    )


def fit(nodes: Iterable[Node], needs: Needs) -> Fit:
    """Group `nodes` by zone and decide which zones can run a unit with `needs`."""
    known: set[str] = set()
    feasible: set[str] = set()
    healthy: set[str] = set()
    misfits: dict[str, Counter[str]] = {}
    for node in nodes:
        if not node.zone:
            continue
        known.add(node.zone)
        why = misfit(node, needs)
        if why is None:
            feasible.add(node.zone)
            if node.available:
                healthy.add(node.zone)
        else:
            misfits.setdefault(node.zone, Counter())[why] += 1
    skipped = {
        zone: _summary(misfits[zone]) for zone in sorted(known - feasible) if zone in misfits
    }
    return Fit(
        known=frozenset(known),
        feasible=frozenset(feasible),
        healthy=frozenset(healthy),
        skipped=MappingProxyType(skipped),
    )


def misfit(node: Node, needs: Needs) -> str | None:
    """Why a unit with `needs` can never run on `node`, or None if it can."""
    labels = dict(node.labels)
    wrong = sorted(key for key, value in needs.node_selector.items() if labels.get(key) != value)
    if wrong:
        return f"node selector {', '.join(f'{key}={needs.node_selector[key]}' for key in wrong)}"
    if needs.terms and not any(t.matches(name=node.name, labels=labels) for t in needs.terms):
        return "required node affinity"
    for taint in node.taints:
        if taint.key in HEALTH_TAINTS or taint.effect not in _BLOCKING:
            continue
        if not any(toleration.tolerates(taint) for toleration in needs.tolerations):
            return f"untolerated taint {taint}"
    allocatable = dict(node.allocatable)
    for resource, wanted in sorted(needs.extended.items()):
        have = quantity(allocatable.get(resource, "0"))
        if have < quantity(wanted):
            return f"allocatable {resource} {allocatable.get(resource, '0')} < {wanted}"
    return None


def quantity(value: str | int) -> Decimal:
    """A Kubernetes quantity ("4", "500m", "1Gi", "1e3") as a number; malformed reads as 0."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None or match.group(2) not in _SUFFIXES:
        return Decimal(0)
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        return Decimal(0)


def _summary(reasons: Counter[str]) -> str:
    """'no node fits: 2 nodes: untolerated taint pool=gpu:NoSchedule; 1 node: ...'."""
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    listed = "; ".join(
        f"{n} {'node' if n == 1 else 'nodes'}: {why}" for why, n in ranked[:_LISTED_REASONS]
    )
    more = len(ranked) - _LISTED_REASONS
    return f"no node fits ({listed}{f'; and {more} more' if more > 0 else ''})"
