"""kiu.api.projectversion: parse once at the edge, immutable afterwards, errors that name fields."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import admission
import pydantic
import pytest
import samples
from hypothesis import given, settings
from hypothesis import strategies as st

from kiu.api import arn, projectversion
from kiu.api.errors import ParseError


def _parse(obj: dict[str, Any]) -> projectversion.ProjectVersion:
    return projectversion.parse(samples.stored(obj))


def test_minimal_manifest_parses_with_the_crd_defaults() -> None:
    version = _parse(samples.manifest())
    spec = version.spec
    assert spec.project == "shoes"
    assert spec.state == "Running"
    assert (spec.min_inference_units, spec.max_inference_units) == (1, None)
    assert spec.model == projectversion.Model(
        name="shoes", repository="s3://models/retail", task="ObjectDetection"
    )
    assert spec.inference_unit.runtime == "triton"
    assert spec.inference_unit.tps == 5.0
    assert spec.inference_unit.resources.limits == {}
    assert spec.autoscaling.target_utilization == 0.7
    assert spec.zones == ()
    assert spec.zone_outage_policy == "Wait"
    assert version.status == projectversion.Status(observed_generation=0)  # the CRD default
    assert version.metadata.creation_timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_parsing_the_stored_object_gives_the_same_model() -> None:
    """The models' defaults and the API server's defaults produce the same value."""
    stored, _ = admission.admit(samples.manifest())
    assert _parse(stored) == _parse(samples.manifest())


def test_arn_comes_from_namespace_project_name_and_creation_time() -> None:
    version = _parse(samples.manifest())
    assert version.arn == arn.ProjectVersionArn(
        namespace="retail", project="shoes", version="shoes-v3", created_ms=samples.CREATED_MS
    )
    assert str(version.arn) == (
        "arn:kiu:rekognition:retail:000000000000:project/shoes/version/shoes-v3/1714564800000"
    )


def test_arn_keeps_milliseconds_exactly() -> None:
    obj = samples.stored(samples.manifest())
    obj["metadata"]["creationTimestamp"] = "2286-11-20T17:46:39.999999Z"
    assert projectversion.parse(obj).arn.created_ms == 9_999_999_999_999


def test_models_are_immutable() -> None:
    version = _parse(samples.manifest())
    with pytest.raises(pydantic.ValidationError):
        version.spec.min_inference_units = 5  # type: ignore[misc]


def test_names_and_aliases_both_construct() -> None:
    by_name = projectversion.Autoscaling(scale_down_delay_seconds=60)
    by_alias = projectversion.Autoscaling.model_validate({"scaleDownDelaySeconds": 60})
    assert by_name == by_alias
    assert by_name.model_dump(by_alias=True)["scaleDownDelaySeconds"] == 60


def test_unknown_fields_are_ignored_for_version_skew() -> None:
    obj = samples.stored(samples.manifest(futureField=True))
    obj["status"] = {"status": "RUNNING", "futureStatus": 1}
    version = projectversion.parse(obj)
    assert version.status.status == "RUNNING"


class _View(Mapping[str, Any]):
    """A read-only mapping like kopf's Body, whose nested values are views too."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        if isinstance(value, Mapping):
            return _View(value)
        if isinstance(value, list):
            return tuple(_View(item) if isinstance(item, Mapping) else item for item in value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_parses_read_only_mapping_views() -> None:
    obj = samples.stored(samples.manifest(zones=["a", "b"]))
    assert projectversion.parse(_View(obj)) == projectversion.parse(obj)


def _full_status() -> dict[str, Any]:
    return {
        "status": "RUNNING",
        "statusMessage": "4 of 4 units in service",
        "arn": "arn:kiu:rekognition:retail:000000000000:project/shoes"
        "/version/shoes-v3/1714564800000",
        "desiredInferenceUnits": 4,
        "inServiceInferenceUnits": 4,
        "zones": {"a": {"desired": 2, "inService": 2}, "b": {"desired": 2, "inService": 2}},
        "tpsLimit": 20,
        "demandTps": 12.4,
        "inferenceUnitHours": 12.5,
        "inferenceUnitSeconds": 45000.0,
        "lastBillingTime": "2024-05-01T13:00:00.123456Z",
        "lastBilledUnits": 4,
        "selector": "kiu.dev/projectversion=shoes-v3",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": projectversion.READY,
                "status": "True",
                "observedGeneration": 1,
                "lastTransitionTime": "2024-05-01T12:01:00Z",
                "reason": "InService",
                "message": "4 units serve 20 calls per second",
            }
        ],
        "lastScaleTime": "2024-05-01T12:00:30+00:00",
        "lastDemandTime": "2024-05-01T13:00:00Z",
    }


def test_status_parses_and_dumps_to_what_the_crd_admits() -> None:
    """The operator can write ``model_dump(by_alias=True, mode="json", exclude_none=True)``."""
    obj = samples.manifest()
    obj["status"] = _full_status()
    assert admission.admit(obj)[1] == []
    status = _parse(obj).status
    assert status.zones["a"] == projectversion.ZoneStatus(desired=2, in_service=2)
    assert status.last_billing_time == datetime(2024, 5, 1, 13, 0, 0, 123456, tzinfo=UTC)
    dumped = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert dumped["lastBillingTime"] == "2024-05-01T13:00:00.123456Z"
    obj["status"] = dumped
    assert admission.admit(obj)[1] == []
    assert _parse(obj).status == status


def test_empty_status_dumps_to_an_empty_patch() -> None:
    assert projectversion.Status().model_dump(by_alias=True, mode="json", exclude_none=True) == {
        "zones": {},
        "conditions": [],
    }


def _with_status(**changes: Any) -> dict[str, Any]:
    obj = samples.manifest()
    obj["status"] = {**_full_status(), **changes}
    return obj


def _deep_spec(path: str, value: Any) -> dict[str, Any]:
    obj = samples.manifest()
    node = obj["spec"]
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return obj


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        pytest.param(
            samples.manifest(minInferenceUnits=3, maxInferenceUnits=2),
            "spec.maxInferenceUnits must be >= spec.minInferenceUnits",
            id="max below min",
        ),
        pytest.param(
            samples.manifest(minInferenceUnits=0),
            "spec.maxInferenceUnits is required when spec.minInferenceUnits is 0:"
            " scaling up from zero needs a ceiling",
            id="zero without max",
        ),
        pytest.param(
            samples.manifest(zones=["a", "a"]),
            "spec.zones entry 'a' is listed twice",
            id="zone twice",
        ),
        pytest.param(
            samples.manifest(project="Shoes"),
            "spec.project 'Shoes' must be a DNS label: lowercase letters, digits and '-',"
            " starting and ending with a letter or digit",
            id="project",
        ),
        pytest.param(
            samples.manifest(project="{x}"),
            "spec.project '{x}' must be a DNS label: lowercase letters, digits and '-',"
            " starting and ending with a letter or digit",
            id="braces stay",
        ),
        pytest.param(
            _deep_spec("inferenceUnit.tps", 0),
            "spec.inferenceUnit.tps: Input should be greater than 0",
            id="tps",
        ),
        pytest.param(
            _deep_spec("inferenceUnit.tps", "5"),
            "spec.inferenceUnit.tps: Input should be a valid number",
            id="tps string",
        ),
        pytest.param(
            samples.manifest(minInferenceUnits=True),
            "spec.minInferenceUnits: Input should be a valid integer",
            id="bool is no count",
        ),
        pytest.param(
            samples.manifest(state="Paused"),
            "spec.state: Input should be 'Running' or 'Stopped'",
            id="state",
        ),
        pytest.param(
            _deep_spec("model.task", None),
            "spec.model.task: Input should be 'Classification' or 'ObjectDetection'",
            id="task",
        ),
        pytest.param(
            {k: v for k, v in samples.manifest().items() if k != "spec"},
            "spec: Field required",
            id="no spec",
        ),
        pytest.param(
            samples.manifest(zones=["a", "b_"]),
            "spec.zones entry 'b_' must be a label value: letters, digits, '-', '_' and '.',"
            " starting and ending with a letter or digit",
            id="zone",
        ),
        pytest.param(
            _with_status(conditions=[{**_full_status()["conditions"][0], "reason": "not camel"}]),
            "status.conditions[0].reason: String should match pattern",
            id="condition reason",
        ),
        pytest.param(
            _with_status(status="RUNING"),
            "status.status: Input should be 'STARTING', 'RUNNING', 'STOPPING', 'STOPPED'"
            " or 'FAILED'",
            id="status",
        ),
        pytest.param(
            _with_status(lastBillingTime="2024-05-01T13:00:00"),
            "status.lastBillingTime: Input should have timezone info",
            id="naive time",
        ),
    ],
)
def test_parse_errors_name_the_field(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ParseError) as caught:
        _parse(obj)
    assert caught.value.message.startswith(message)
    assert str(caught.value) == caught.value.message


def test_parse_reports_every_problem() -> None:
    obj = samples.manifest(state="Paused", zoneOutagePolicy="Panic")
    with pytest.raises(ParseError) as caught:
        _parse(obj)
    assert caught.value.message.startswith("spec.state: Input should be")
    assert "; spec.zoneOutagePolicy: Input should be 'Wait' or 'Rebalance'" in caught.value.message


def test_parse_needs_the_metadata_the_api_server_sets() -> None:
    with pytest.raises(ParseError, match=r"metadata\.namespace: Field required"):
        projectversion.parse(samples.manifest())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
_SPEC_KEYS = st.sampled_from(
    [
        "project",
        "state",
        "minInferenceUnits",
        "maxInferenceUnits",
        "model",
        "inferenceUnit",
        "zones",
    ]
)


@settings(max_examples=200, deadline=None)
@given(changes=st.dictionaries(_SPEC_KEYS, _JSON, max_size=3))
def test_garbage_raises_parse_error_and_nothing_else(changes: dict[str, Any]) -> None:
    obj = samples.stored(samples.manifest(**changes))
    try:
        projectversion.parse(obj)
    except ParseError:
        return  # the only error allowed; its message is checked above


def test_placement_fields_come_back_in_the_pods_shape() -> None:
    """What a user wrote under spec.inferenceUnit reaches the pod as written."""
    pv = projectversion.parse(samples.stored(samples.manifest(inferenceUnit=samples.PLACEMENT)))
    own = {"runtime", "resources"}
    assert pv.spec.inference_unit.pod_fields() == {
        key: value for key, value in samples.PLACEMENT.items() if key not in own
    }
    assert (
        projectversion.parse(samples.stored(samples.manifest())).spec.inference_unit.pod_fields()
        == {}
    )


@pytest.mark.parametrize("field", ["nodeSelector", "labels"])
def test_a_key_that_is_no_label_key_fails_the_version_naming_the_field(field: str) -> None:
    """The CRD cannot afford a pattern on every map key (CEL cost), so the model checks them."""
    body = samples.stored(samples.manifest(inferenceUnit={field: {"bad key!": "x"}}))
    with pytest.raises(ParseError, match=f"spec.inferenceUnit.{field} keys must be label keys"):
        projectversion.parse(body)
