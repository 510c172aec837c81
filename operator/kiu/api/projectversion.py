"""The ProjectVersion resource as immutable models, parsed once at the edge.

crds/projectversion.yaml is the contract; these models mirror it field for
field (tests/api check that names, defaults, bounds, enums and rule messages
agree), so code past ``parse`` never looks at raw dictionaries again. Python
names are snake_case; the wire names are the CRD's camelCase aliases, and
either may be used to construct a model. Unknown fields are ignored rather than
refused, so a reader older than the CRD keeps working during an upgrade.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from kiu.api import arn, names, placement
from kiu.api.base import Frozen, rule_error
from kiu.api.errors import ParseError

GROUP: Final = "kiu.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "ProjectVersion"
PLURAL: Final = "projectversions"
SINGULAR: Final = "projectversion"
#: Not ``pv``: that is PersistentVolume.
SHORT_NAME: Final = "pjv"
CATEGORY: Final = "kiu"

#: Bound on every unit count: far above any real version, low enough to stop a typo.
MAX_INFERENCE_UNITS: Final = 1000
MAX_TPS_PER_UNIT: Final = 10_000
MAX_DELAY_SECONDS: Final = 86_400
MAX_STABLE_WINDOW_SECONDS: Final = 3_600

#: Condition types the operator reports.
READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"

State = Literal["Running", "Stopped"]
Task = Literal["Classification", "ObjectDetection"]
Runtime = Literal["triton", "cpu"]
ZoneOutagePolicy = Literal["Wait", "Rebalance"]
#: The reference service's names for the states of a running model.
Phase = Literal["STARTING", "RUNNING", "STOPPING", "STOPPED", "FAILED"]
ConditionStatus = Literal["True", "False", "Unknown"]

_OBJECT_STORAGE: Final = r"^(s3|gs|as)://"
_TRITON_ONLY_STORAGE: Final = r"^(gs|as)://"
_REPOSITORY: Final = r"^((s3|gs|as)://\S+|pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/\S*)?|/\S*)$"
_MODEL_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_NO_WHITESPACE: Final = r"^\S+$"
# Upstream patterns: core/v1 resource.Quantity and metav1.Condition.
_QUANTITY: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_CONDITION_TYPE: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
_REASON: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _format(pattern: str, *, message: Callable[[str], str]) -> AfterValidator:
    """Refuse a string with the message of the CRD rule that checks the same pattern."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise rule_error(message(value))
        return value

    return AfterValidator(check)


def _unique(zones: tuple[str, ...]) -> tuple[str, ...]:
    """Mirror x-kubernetes-list-type: set."""
    for index, zone in enumerate(zones):
        if zone in zones[:index]:
            raise rule_error(f"spec.zones entry '{zone}' is listed twice")
    return zones


Project = Annotated[
    str,
    StringConstraints(min_length=1, max_length=names.MAX_LABEL_LENGTH),
    _format(
        names.DNS_LABEL,
        message=lambda value: (
            f"spec.project '{value}' must be a DNS label: lowercase letters,"
            " digits and '-', starting and ending with a letter or digit"
        ),
    ),
]
ModelName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    _format(
        _MODEL_NAME,
        message=lambda value: (
            f"spec.model.name '{value}' must start with a letter or digit"
            " and contain only letters, digits, '_', '.' and '-'"
        ),
    ),
]
Repository = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    _format(
        _REPOSITORY,
        message=lambda value: (
            f"spec.model.repository '{value}' must be s3://, gs:// or as://"
            " object storage, pvc://<claim>/<path>, or an absolute path, without whitespace"
        ),
    ),
]
Image = Annotated[
    str,
    StringConstraints(min_length=1, max_length=512),
    _format(
        _NO_WHITESPACE,
        message=lambda value: f"spec.inferenceUnit.image '{value}' must not contain whitespace",
    ),
]
SecretName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253),
    _format(
        names.DNS_SUBDOMAIN,
        message=lambda value: (
            f"spec.inferenceUnit.repositorySecretName '{value}' must be a"
            " Secret name: a DNS subdomain"
        ),
    ),
]
Zone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=names.MAX_LABEL_LENGTH),
    _format(
        names.LABEL_VALUE,
        message=lambda value: (
            f"spec.zones entry '{value}' must be a label value: letters,"
            " digits, '-', '_' and '.', starting and ending with a letter or digit"
        ),
    ),
]
#: An int, or a quantity string such as "500m" or "4Gi" (int-or-string, as in a Pod).
Quantity = int | Annotated[str, StringConstraints(pattern=_QUANTITY)]
ResourceList = Annotated[Mapping[str, Quantity], Field(max_length=16)]
Units = Annotated[int, Field(ge=0, le=MAX_INFERENCE_UNITS)]
Rate = Annotated[float, Field(ge=0)]
#: RFC 3339 text on the wire; a timezone-aware datetime in Python.
Timestamp = Annotated[AwareDatetime, Field(strict=False)]
Generation = Annotated[int, Field(ge=0)]


class Model(Frozen):
    """The trained model a version serves."""

    name: ModelName
    repository: Repository
    task: Task


class ResourceRequirements(Frozen):
    """Compute resources of a unit container, as core/v1 ResourceRequirements."""

    limits: ResourceList = {}
    requests: ResourceList = {}


class InferenceUnit(placement.Placement):
    """What one inference unit (one pod) is, and where and as whom it runs."""

    runtime: Runtime = "triton"
    tps: Annotated[float, Field(gt=0, le=MAX_TPS_PER_UNIT)] = 5.0
    image: Image | None = None
    resources: ResourceRequirements = ResourceRequirements()
    repository_secret_name: SecretName | None = None


class Autoscaling(Frozen):
    """How demand turns into a unit count between min and max."""

    target_utilization: Annotated[float, Field(gt=0, le=1)] = 0.7
    scale_down_delay_seconds: Annotated[int, Field(ge=0, le=MAX_DELAY_SECONDS)] = 300
    scale_to_zero_after_seconds: Annotated[int, Field(ge=0, le=MAX_DELAY_SECONDS)] = 900
    stable_window_seconds: Annotated[int, Field(ge=5, le=MAX_STABLE_WINDOW_SECONDS)] = 60


class Spec(Frozen):
    """Desired state, as the user wrote it plus the CRD's defaults."""

    project: Project
    state: State = "Running"
    min_inference_units: Units = 1
    max_inference_units: Annotated[int, Field(ge=1, le=MAX_INFERENCE_UNITS)] | None = None
    model: Model
    inference_unit: InferenceUnit = InferenceUnit()
    autoscaling: Autoscaling = Autoscaling()
    zones: Annotated[
        tuple[Zone, ...], Field(max_length=16, strict=False), AfterValidator(_unique)
    ] = ()
    zone_outage_policy: ZoneOutagePolicy = "Wait"

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        """The CRD's cross-field rules, with the same messages."""
        low, high = self.min_inference_units, self.max_inference_units
        if high is not None and high < low:
            raise rule_error("spec.maxInferenceUnits must be >= spec.minInferenceUnits")
        if low == 0 and high is None:
            raise rule_error(
                "spec.maxInferenceUnits is required when spec.minInferenceUnits is 0:"
                " scaling up from zero needs a ceiling"
            )
        if self.inference_unit.repository_secret_name is not None and not re.match(
            _OBJECT_STORAGE, self.model.repository
        ):
            raise rule_error(
                "spec.inferenceUnit.repositorySecretName is only for object-storage"
                " repositories (s3://, gs://, as://)"
            )
        if self.inference_unit.runtime == "cpu" and re.match(
            _TRITON_ONLY_STORAGE, self.model.repository
        ):
            raise rule_error(
                "spec.model.repository gs:// and as:// are read by the triton runtime only:"
                " spec.inferenceUnit.runtime cpu reads s3://, pvc:// or a path"
            )
        return self


class ZoneStatus(Frozen):
    """Units of one zone."""

    desired: Units
    in_service: Units
    skipped: Annotated[str, StringConstraints(max_length=1024)] | None = None


class Condition(Frozen):
    """One aspect of the state, in the metav1.Condition shape."""

    type: Annotated[str, StringConstraints(max_length=316, pattern=_CONDITION_TYPE)]
    status: ConditionStatus
    observed_generation: Generation | None = None
    last_transition_time: Timestamp
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_REASON)]
    message: Annotated[str, StringConstraints(max_length=32768)]


def _unique_types(conditions: tuple[Condition, ...]) -> tuple[Condition, ...]:
    """Mirror x-kubernetes-list-type: map keyed by type."""
    types = [condition.type for condition in conditions]
    for index, kind in enumerate(types):
        if kind in types[:index]:
            raise rule_error(f"status.conditions has two conditions of type '{kind}'")
    return conditions


class Recommended(Frozen):
    """A unit count the autoscaler recommended, and when."""

    time: Timestamp
    units: Units


class ScalingHistory(Frozen):
    """The autoscaler's state between evaluations (`kiu.policy.scaling.History`)."""

    recommendations: Annotated[
        tuple[Recommended, ...], Field(max_length=MAX_INFERENCE_UNITS + 1, strict=False)
    ] = ()
    stable_calls: Rate | None = None
    stable_seconds: Rate | None = None
    stable_spread: Rate | None = None
    sampled_at: Timestamp | None = None
    burst_until: Timestamp | None = None
    window_calls: Rate | None = None
    window_seconds: Rate | None = None


class Status(Frozen):
    """Observed state, written by the operator only; every field may be absent."""

    status: Phase | None = None
    status_message: Annotated[str, StringConstraints(max_length=4096)] | None = None
    arn: Annotated[str, StringConstraints(max_length=2048)] | None = None
    desired_inference_units: Units | None = None
    in_service_inference_units: Units | None = None
    zones: Annotated[Mapping[str, ZoneStatus], Field(max_length=32)] = {}
    tps_limit: Rate | None = None
    demand_tps: Rate | None = None
    inference_unit_hours: Rate | None = None
    inference_unit_seconds: Rate | None = None
    last_billing_time: Timestamp | None = None
    last_billed_units: Units | None = None
    selector: Annotated[str, StringConstraints(max_length=1024)] | None = None
    observed_generation: Generation | None = None
    conditions: Annotated[
        tuple[Condition, ...], Field(max_length=8, strict=False), AfterValidator(_unique_types)
    ] = ()
    last_scale_time: Timestamp | None = None
    last_demand_time: Timestamp | None = None
    scaling_history: ScalingHistory | None = None


class Metadata(Frozen):
    """The parts of metadata kiu reads; the API server sets all of them."""

    name: Annotated[
        str, StringConstraints(max_length=names.MAX_LABEL_LENGTH, pattern=names.DNS_1035_LABEL)
    ]
    namespace: str
    uid: str
    generation: Generation
    creation_timestamp: Timestamp


class ProjectVersion(Frozen):
    """A ProjectVersion as stored by the API server."""

    metadata: Metadata
    spec: Spec
    status: Status = Status(observed_generation=0)
    """The CRD's default: a status no operator wrote yet is observedGeneration 0."""

    @property
    def arn(self) -> arn.ProjectVersionArn:
        """The identifier of the compatible API; stable for the object's lifetime."""
        return arn.ProjectVersionArn(
            namespace=self.metadata.namespace,
            project=self.spec.project,
            version=self.metadata.name,
            created_ms=_milliseconds(self.metadata.creation_timestamp),
        )


def parse(body: Mapping[str, object]) -> ProjectVersion:
    """Validate a ProjectVersion read from the API server (a kopf body or a plain dict).

    Raises ParseError with one message per problem, each naming its field.
    """
    try:
        return ProjectVersion.model_validate(_plain(body))
    except ValidationError as error:
        raise ParseError(_describe(error)) from error


def _plain(value: object) -> object:
    """Deep-copy mappings and lists into dicts and lists: strict validation takes only those."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(item) for item in value]
    return value


def _describe(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in detail["loc"]
        ).lstrip(".")
        message = detail["msg"]
        # Rule messages already name their field, as the CRD's do.
        named = bool(detail["loc"]) and message.startswith(f"{detail['loc'][0]}.")
        problems.append(message if named else f"{where}: {message}")
    return "; ".join(problems)


def _milliseconds(moment: datetime) -> int:
    """Milliseconds since the epoch, in integer arithmetic so no float rounding creeps in."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)
