"""kiu.api's models and the CRD schema describe the same resource.

Compared recursively, field by field: names, types, required fields, defaults
(after the API server's nested defaulting), bounds, lengths, enums, patterns and
formats. Format rules that live in CEL on the CRD side and in validators on the
model side are compared by behaviour: both must accept the same strings and
refuse them with the same message.
"""

from __future__ import annotations

import copy
from typing import Any

import admission
import pytest
import samples
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kiu.api import names, projectversion
from kiu.api.errors import ParseError

_COMPARED = {
    "type",
    "enum",
    "minLength",
    "maxLength",
    "pattern",
    "maxItems",
    "maxProperties",
}


def _crd_shape(node: dict[str, Any]) -> dict[str, Any]:
    """The comparable part of a CRD schema node."""
    if node.get("x-kubernetes-int-or-string"):
        shape: dict[str, Any] = {"type": "int-or-string"}
        if "pattern" in node:
            shape["pattern"] = node["pattern"]
        return shape
    shape = {key: node[key] for key in _COMPARED if key in node}
    if "minimum" in node:
        shape["lower"] = (node["minimum"], node.get("exclusiveMinimum", False))
    if "maximum" in node:
        shape["upper"] = node["maximum"]
    if node.get("format") == "date-time":
        shape["format"] = "date-time"
    if "properties" in node:
        shape["properties"] = {key: _crd_shape(child) for key, child in node["properties"].items()}
        shape["required"] = set(node.get("required", ()))
        shape["defaults"] = {key: _crd_default(child) for key, child in node["properties"].items()}
    if "items" in node:
        shape["items"] = _crd_shape(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        shape["values"] = _crd_shape(node["additionalProperties"])
    return shape


def _crd_default(node: dict[str, Any]) -> Any:
    if "default" not in node:
        return None
    return _pruned(admission.default(copy.deepcopy(node["default"]), node))


def _model_shape(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The comparable part of a pydantic JSON schema node, in the CRD's terms."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    branches = [branch for branch in node.get("anyOf", ()) if branch.get("type") != "null"]
    if len(branches) == 1:  # X | None: absent when None
        node = {**branches[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        return _model_shape(node, defs)
    if [branch.get("type") for branch in branches] == ["integer", "string"]:
        shape: dict[str, Any] = {"type": "int-or-string"}
        if "pattern" in branches[1]:
            shape["pattern"] = branches[1]["pattern"]
        return shape
    shape = {key: node[key] for key in _COMPARED if key in node}
    if "minimum" in node or "exclusiveMinimum" in node:
        exclusive = "exclusiveMinimum" in node
        shape["lower"] = (node["exclusiveMinimum" if exclusive else "minimum"], exclusive)
    if "maximum" in node:
        shape["upper"] = node["maximum"]
    if node.get("format") == "date-time":
        shape["format"] = "date-time"
    if "properties" in node:
        properties = node["properties"]
        shape["properties"] = {key: _model_shape(child, defs) for key, child in properties.items()}
        shape["required"] = set(node.get("required", ()))
        shape["defaults"] = {
            key: _pruned(child.get("default")) for key, child in properties.items()
        }
    if "items" in node:
        shape["items"] = _model_shape(node["items"], defs)
    if isinstance(node.get("additionalProperties"), dict):
        shape["values"] = _model_shape(node["additionalProperties"], defs)
    return shape


def _pruned(value: Any) -> Any:
    """Absent, None and empty collections mean the same: nothing set."""
    if isinstance(value, dict):
        kept = {key: _pruned(item) for key, item in value.items()}
        kept = {key: item for key, item in kept.items() if item is not None}
        return kept or None
    if isinstance(value, list | tuple):
        return list(value) or None
    return value


def _schema(model: type[projectversion.ProjectVersion]) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return schema, schema.get("$defs", {})


@pytest.mark.parametrize("part", ["spec", "status"])
def test_models_and_crd_agree(part: str) -> None:
    schema, defs = _schema(projectversion.ProjectVersion)
    model = _model_shape(schema["properties"][part], defs)
    crd = _crd_shape(admission.node_at(part))
    assert model == crd


def test_metadata_name_agrees() -> None:
    schema, defs = _schema(projectversion.ProjectVersion)
    name = _model_shape(schema["properties"]["metadata"], defs)["properties"]["name"]
    assert name == _crd_shape(admission.node_at("metadata"))["properties"]["name"]


def test_comparison_notices_a_difference() -> None:
    crd = copy.deepcopy(admission.node_at("spec"))
    crd["properties"]["minInferenceUnits"]["maximum"] = 999
    crd["properties"]["inferenceUnit"]["properties"]["tps"]["default"] = 4
    schema, defs = _schema(projectversion.ProjectVersion)
    model = _model_shape(schema["properties"]["spec"], defs)
    shape = _crd_shape(crd)
    assert model["properties"]["minInferenceUnits"] != shape["properties"]["minInferenceUnits"]
    assert model["defaults"]["inferenceUnit"] != shape["defaults"]["inferenceUnit"]


# Formats checked by CEL rules on one side and validators on the other --------------------------

#: Field path -> a manifest with that field set to a value.
_FIELDS = {
    "spec.project": lambda value: samples.manifest(project=value),
    "spec.model.name": lambda value: samples.manifest(
        model={"name": value, "repository": "/m", "task": "Classification"}
    ),
    "spec.model.repository": lambda value: samples.manifest(
        model={"name": "m", "repository": value, "task": "Classification"}
    ),
    "spec.inferenceUnit.image": lambda value: samples.manifest(inferenceUnit={"image": value}),
    "spec.inferenceUnit.repositorySecretName": lambda value: samples.manifest(
        inferenceUnit={"repositorySecretName": value}
    ),
    "spec.zones[]": lambda value: samples.manifest(zones=[value]),
}
_TEXT = st.text(alphabet="aZ09-_./: \n\t{}s3gpvc", max_size=24) | st.sampled_from(
    ["s3://b/p", "pvc://claim/dir", "pvc://Claim", "/abs/path", "a.b", "-a", "a-", "a..b", ""]
)


def _outcomes(field: str, value: str) -> tuple[list[str], str | None]:
    """What the API server says (``path: message`` each) and what the model says (or None)."""
    obj = _FIELDS[field](value)
    return admission.admit(obj)[1], _model_problem(obj)


def _model_problem(obj: dict[str, Any]) -> str | None:
    """The model's message for ``obj`` as stored, None when it parses."""
    try:
        projectversion.parse(samples.stored(obj))
    except ParseError as error:
        return error.message
    return None


@pytest.mark.parametrize("field", sorted(_FIELDS))
@settings(max_examples=150, deadline=None)
@given(value=_TEXT)
@example(value="a\n")
@example(value="x" * 64)
def test_format_rules_and_validators_agree(field: str, value: str) -> None:
    errors, model = _outcomes(field, value)
    if not errors:
        assert model is None
        return
    assert model is not None
    rule_messages = [
        message for message in admission.messages(errors) if message.startswith("spec.")
    ]
    if rule_messages:  # refused by a CEL rule: the model says the same words
        assert model in rule_messages
    else:  # refused by a keyword (length): wording differs, the field does not
        paths = {error.split(": ", 1)[0] for error in errors}
        assert model.split(": ", 1)[0] in paths


@pytest.mark.parametrize(
    ("check", "field"),
    [(names.is_dns_label, "spec.project")],
)
@settings(max_examples=150, deadline=None)
@given(value=_TEXT)
def test_name_helpers_agree_with_the_crd(check: Any, field: str, value: str) -> None:
    crd, _ = _outcomes(field, value)
    assert check(value) == (not crd)


def test_metadata_name_helper_agrees_with_the_crd() -> None:
    node = admission.node_at("metadata.name")
    for value in ["a", "shoes-v3", "3d", "a-", "A", "a" * 63, "a" * 64, "a.b", ""]:
        assert names.is_dns_1035_label(value) == (not admission.validate(value, node)), value


@settings(max_examples=300, deadline=None)
@given(
    low=st.integers(min_value=-1, max_value=1001),
    high=st.none() | st.integers(min_value=-1, max_value=1001),
    repository=st.sampled_from(["s3://b/m", "gs://b/m", "as://a/c/m", "/opt/m", "pvc://c/m"]),
    secret=st.none() | st.just("creds"),
    runtime=st.none() | st.sampled_from(["triton", "cpu"]),
)
def test_cross_field_rules_and_validators_agree(
    low: int, high: int | None, repository: str, secret: str | None, runtime: str | None
) -> None:
    spec: dict[str, Any] = {
        "minInferenceUnits": low,
        "model": {"name": "m", "repository": repository, "task": "Classification"},
    }
    if high is not None:
        spec["maxInferenceUnits"] = high
    unit: dict[str, Any] = {}
    if secret is not None:
        unit["repositorySecretName"] = secret
    if runtime is not None:
        unit["runtime"] = runtime
    if unit:
        spec["inferenceUnit"] = unit
    obj = samples.manifest(**spec)
    _, errors = admission.admit(obj)
    problem = _model_problem(obj)
    if problem is None:
        assert errors == []
    else:
        # Bounds are keywords on both sides (paths agree); rules carry the same message.
        paths = {error.split(": ", 1)[0] for error in errors}
        assert problem in admission.messages(errors) or problem.split(": ", 1)[0] in paths
