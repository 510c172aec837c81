"""The CRD registers (structural schema) and its names, columns and scale paths are right."""

from __future__ import annotations

import copy

import admission
import pytest
import samples

from kiu.api import projectversion


def test_schema_is_structural_and_follows_conventions() -> None:
    assert admission.structural_problems(admission.root_schema()) == []


@pytest.mark.parametrize(
    ("path", "change", "problem"),
    [
        ("spec.zones", {"type": None}, "spec.zones: type missing"),
        ("spec.autoscaling", {"additionalProperties": {"type": "string"}}, "exactly one of"),
        ("spec.autoscaling", {"allOf": [{"type": "object"}]}, "keyword 'allOf' not allowed"),
        ("spec.project", {"maxLength": None}, "string without maxLength"),
        ("spec.zones", {"maxItems": None}, "array needs items and maxItems"),
        ("spec.state", {"description": None}, "no description"),
        ("spec.state", {"default": "Paused"}, "default invalid"),
        ("spec.minInferenceUnits", {"default": 1001}, "default invalid"),
        (
            "spec.inferenceUnit.resources.limits.*",
            {"type": "string"},
            "int-or-string needs anyOf integer/string and no type",
        ),
        ("spec", {"required": ["project", "modle"]}, "required field 'modle'"),
    ],
)
def test_structural_check_catches_broken_schemas(path: str, change: dict, problem: str) -> None:
    """The checker itself must fail on the mistakes it exists to catch."""
    root = copy.deepcopy(admission.root_schema())
    node = root
    for part in path.split("."):
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
    for key, value in change.items():
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    assert any(problem in found for found in admission.structural_problems(root))


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"rule": "self.x >", "message": "spec.x broken"}, "does not compile"),
        ({"rule": "true", "message": "must be fine"}, "message must name the field"),
        ({"rule": "true", "message": "spec.x\nsecond line"}, "one-line message"),
        ({"rule": "true", "message": "spec.x", "fieldPath": ".nope"}, "names no field"),
        ({"rule": "true", "message": "spec.x", "reason": "Bad"}, "unknown reason"),
    ],
)
def test_rule_check_catches_broken_rules(rule: dict, problem: str) -> None:
    root = copy.deepcopy(admission.root_schema())
    root["properties"]["spec"]["x-kubernetes-validations"] = [rule]
    assert any(problem in found for found in admission.structural_problems(root))


def test_names_match_the_constants() -> None:
    crd = admission.load_crd()
    names = crd["spec"]["names"]
    (version,) = crd["spec"]["versions"]
    assert crd["metadata"]["name"] == f"{projectversion.PLURAL}.{projectversion.GROUP}"
    assert crd["spec"]["group"] == projectversion.GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert version["name"] == projectversion.VERSION
    assert version["served"]
    assert version["storage"]
    assert names["kind"] == projectversion.KIND
    assert names["listKind"] == f"{projectversion.KIND}List"
    assert names["plural"] == projectversion.PLURAL
    assert names["singular"] == projectversion.SINGULAR
    assert names["shortNames"] == [projectversion.SHORT_NAME]
    assert names["categories"] == [projectversion.CATEGORY]


def _field(json_path: str) -> dict:
    return admission.node_at(json_path.lstrip("."))


def test_scale_subresource_points_at_the_right_fields() -> None:
    (version,) = admission.load_crd()["spec"]["versions"]
    scale = version["subresources"]["scale"]
    assert version["subresources"]["status"] == {}
    assert scale["specReplicasPath"] == ".spec.minInferenceUnits"
    assert _field(scale["specReplicasPath"])["type"] == "integer"
    assert scale["statusReplicasPath"] == ".status.inServiceInferenceUnits"
    assert _field(scale["statusReplicasPath"])["type"] == "integer"
    assert scale["labelSelectorPath"] == ".status.selector"
    assert _field(scale["labelSelectorPath"])["type"] == "string"


def test_printer_columns_show_the_reference_figures() -> None:
    (version,) = admission.load_crd()["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    default_view = [column["name"] for column in columns if not column.get("priority")]
    assert default_view == [
        "Status",
        "Ready",
        "Reason",
        "Desired",
        "InService",
        "Min",
        "Max",
        "TPS",
        "Age",
    ]
    wide = [column["name"] for column in columns if column.get("priority")]
    assert wide == ["Project", "UnitTPS", "Demand", "ARN"]
    for column in columns:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        # The Ready condition's fields, as KServe and Knative show them.
        node = _field(column["jsonPath"].replace('[?(@.type=="Ready")]', "[]"))
        assert column["type"] == node["type"], column["name"]
        assert column.get("description"), column["name"]


def test_minimal_manifest_is_admitted_with_every_default_filled_in() -> None:
    stored, errors = admission.admit(samples.manifest())
    assert errors == []
    assert stored["spec"] == {
        "project": "shoes",
        "state": "Running",
        "minInferenceUnits": 1,
        "model": {"name": "shoes", "repository": "s3://models/retail", "task": "ObjectDetection"},
        "inferenceUnit": {"runtime": "triton", "tps": 5},
        "autoscaling": {
            "targetUtilization": 0.7,
            "scaleDownDelaySeconds": 300,
            "scaleToZeroAfterSeconds": 900,
            "stableWindowSeconds": 60,
        },
        "zones": [],
        "zoneOutagePolicy": "Wait",
    }


def test_defaulting_is_idempotent() -> None:
    """Stable GitOps diffs: a stored object defaults to itself."""
    stored, _ = admission.admit(samples.manifest())
    assert admission.admit(stored)[0] == stored


def test_status_keeps_no_unknown_fields() -> None:
    """kopf keeps its state in annotations: status.kopf would be refused (pruned on a cluster)."""
    obj = samples.manifest()
    obj["status"] = {"kopf": {"progress": {}}}
    _, errors = admission.admit(obj)
    assert errors == ['status.kopf: unknown field "status.kopf"']
