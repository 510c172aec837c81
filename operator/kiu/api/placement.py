"""Where and as whom unit pods run: the core/v1 Pod fields a ProjectVersion passes on.

Named fields of `spec.inferenceUnit` rather than a pod template overlay: an overlay
would offer fields kiu must own (containers, probes, security context, volumes,
the zone's node selector) and need merge rules for each; these are only the fields
a cluster operator needs to place and identify units (as KServe's predictor offers),
each validated by the CRD and mirrored here (tests/api check the two agree).
`pod_fields` gives them back in the Pod's own shape for the manifest builders.
"""

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, model_validator

from kiu.api import names
from kiu.api.base import Frozen, rule_error

#: The node label the operator sets per zone; a nodeSelector may not set it.
ZONE_LABEL = "topology.kubernetes.io/zone"
_OPERATOR_LABEL_PREFIXES = ("kiu.dev/", "app.kubernetes.io/")
_LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

DnsName = Annotated[str, StringConstraints(max_length=253, pattern=names.DNS_SUBDOMAIN)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=_LABEL_VALUE)]
Key = Annotated[str, StringConstraints(max_length=316)]
Value = Annotated[str, StringConstraints(max_length=63)]
Values = Annotated[tuple[Value, ...], Field(max_length=64, strict=False)]


def _label_keys(field: str) -> AfterValidator:
    pattern = re.compile(_LABEL_KEY)

    def check(value: Mapping[str, str]) -> Mapping[str, str]:
        if not all(pattern.match(key) for key in value):
            raise rule_error(f"spec.inferenceUnit.{field} keys must be label keys")
        return value

    return AfterValidator(check)


def _no_zone(value: Mapping[str, str]) -> Mapping[str, str]:
    if ZONE_LABEL in value:
        raise rule_error(
            f"spec.inferenceUnit.nodeSelector must not set {ZONE_LABEL}:"
            " list the zones in spec.zones"
        )
    return value


def _not_operator_labels(value: Mapping[str, str]) -> Mapping[str, str]:
    if any(key.startswith(_OPERATOR_LABEL_PREFIXES) for key in value):
        raise rule_error(
            "spec.inferenceUnit.labels must not use kiu.dev/ or app.kubernetes.io/ keys"
        )
    return value


def _annotation_keys(value: Mapping[str, str]) -> Mapping[str, str]:
    if any(len(key) > 316 or key.startswith("kiu.dev/") for key in value):
        raise rule_error(
            "spec.inferenceUnit.annotations keys must be at most 316 characters"
            " and not under kiu.dev/"
        )
    return value


class Toleration(Frozen):
    key: Key | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: Value | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        """The CRD's rules on a toleration, with the same messages."""
        if self.operator == "Exists" and self.value:
            raise rule_error(
                "spec.inferenceUnit.tolerations value must be empty when operator is Exists"
            )
        if self.key is None and self.operator != "Exists":
            raise rule_error("spec.inferenceUnit.tolerations with no key must have operator Exists")
        return self


class NodeSelectorRequirement(Frozen):
    key: Key
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: Values = ()


class NodeSelectorTerm(Frozen):
    match_expressions: Annotated[
        tuple[NodeSelectorRequirement, ...], Field(max_length=16, strict=False)
    ] = ()
    match_fields: Annotated[
        tuple[NodeSelectorRequirement, ...], Field(max_length=16, strict=False)
    ] = ()


class NodeSelector(Frozen):
    node_selector_terms: Annotated[tuple[NodeSelectorTerm, ...], Field(max_length=8, strict=False)]


class PreferredSchedulingTerm(Frozen):
    weight: Annotated[int, Field(ge=1, le=100)]
    preference: NodeSelectorTerm


class NodeAffinity(Frozen):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: Annotated[
        tuple[PreferredSchedulingTerm, ...], Field(max_length=8, strict=False)
    ] = ()


class LabelSelectorRequirement(Frozen):
    key: Key
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: Values = ()


class LabelSelector(Frozen):
    match_labels: Annotated[Mapping[str, Value], Field(max_length=32)] = {}
    match_expressions: Annotated[
        tuple[LabelSelectorRequirement, ...], Field(max_length=16, strict=False)
    ] = ()


class PodAffinityTerm(Frozen):
    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: Annotated[tuple[Value, ...], Field(max_length=16, strict=False)] = ()
    topology_key: Annotated[str, StringConstraints(min_length=1, max_length=316)]


class WeightedPodAffinityTerm(Frozen):
    weight: Annotated[int, Field(ge=1, le=100)]
    pod_affinity_term: PodAffinityTerm


class PodAffinity(Frozen):
    required_during_scheduling_ignored_during_execution: Annotated[
        tuple[PodAffinityTerm, ...], Field(max_length=8, strict=False)
    ] = ()
    preferred_during_scheduling_ignored_during_execution: Annotated[
        tuple[WeightedPodAffinityTerm, ...], Field(max_length=8, strict=False)
    ] = ()


class Affinity(Frozen):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


class LocalObjectReference(Frozen):
    name: Annotated[
        str,
        StringConstraints(min_length=1, max_length=253, pattern=names.DNS_SUBDOMAIN),
    ]


class KeySelector(Frozen):
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    key: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    optional: bool | None = None


class FieldSelector(Frozen):
    field_path: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class EnvVarSource(Frozen):
    model_config = ConfigDict(**Frozen.model_config, json_schema_extra={"maxProperties": 1})

    secret_key_ref: KeySelector | None = None
    config_map_key_ref: KeySelector | None = None
    field_ref: FieldSelector | None = None

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        """maxProperties 1 and the CRD's rule: exactly one source."""
        sources = [self.secret_key_ref, self.config_map_key_ref, self.field_ref]
        if sum(source is not None for source in sources) != 1:
            raise rule_error(
                "spec.inferenceUnit.env valueFrom needs one of secretKeyRef,"
                " configMapKeyRef and fieldRef"
            )
        return self


class EnvVar(Frozen):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_ENV_NAME)]
    value: Annotated[str, StringConstraints(max_length=32768)] | None = None
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        """The CRD's rule: a value or a reference, not both."""
        if (self.value is None) == (self.value_from is None):
            raise rule_error(
                "spec.inferenceUnit.env entries need exactly one of value and valueFrom"
            )
        return self


def _unique_names(env: tuple[EnvVar, ...]) -> tuple[EnvVar, ...]:
    """Mirror x-kubernetes-list-type: map keyed by name."""
    seen: set[str] = set()
    for var in env:
        if var.name in seen:
            raise rule_error(f"spec.inferenceUnit.env has two entries named '{var.name}'")
        seen.add(var.name)
    return env


NodeSelectorMap = Annotated[
    Mapping[str, LabelValue],
    Field(max_length=32),
    _label_keys("nodeSelector"),
    AfterValidator(_no_zone),
]
PodLabels = Annotated[
    Mapping[str, LabelValue],
    Field(max_length=32),
    _label_keys("labels"),
    AfterValidator(_not_operator_labels),
]
PodAnnotations = Annotated[
    Mapping[str, Annotated[str, StringConstraints(max_length=4096)]],
    Field(max_length=32),
    AfterValidator(_annotation_keys),
]
Tolerations = Annotated[tuple[Toleration, ...], Field(max_length=16, strict=False)]
PullSecrets = Annotated[tuple[LocalObjectReference, ...], Field(max_length=8, strict=False)]
Env = Annotated[
    tuple[EnvVar, ...], Field(max_length=64, strict=False), AfterValidator(_unique_names)
]


class Placement(Frozen):
    """Mixed into InferenceUnit: the placement fields, all optional."""

    node_selector: NodeSelectorMap = {}
    tolerations: Tolerations = ()
    affinity: Affinity | None = None
    priority_class_name: DnsName | None = None
    service_account_name: DnsName | None = None
    runtime_class_name: DnsName | None = None
    image_pull_secrets: PullSecrets = ()
    labels: PodLabels = {}
    annotations: PodAnnotations = {}
    env: Env = ()

    def pod_fields(self) -> dict[str, Any]:
        """The set fields in the Pod's shape (camelCase, nothing empty), for the builders."""
        dumped: dict[str, Any] = self.model_dump(
            mode="json", by_alias=True, exclude_none=True, include=set(Placement.model_fields)
        )
        return {key: value for key, value in _pruned(dumped).items() if value not in ({}, [])}


def _pruned(value: Any) -> Any:
    """Drop empty lists and maps nested in a dump (defaults, not the user's words)."""
    if isinstance(value, dict):
        kept = {key: _pruned(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in ({}, [])}
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value
