"""Bad ProjectVersions are refused at admission, with a message naming the field."""

from __future__ import annotations

from typing import Any

import admission
import pytest
import samples


def _with(spec: dict[str, Any], **top: Any) -> dict[str, Any]:
    obj = samples.manifest(**spec)
    obj.update(top)
    return obj


def _spec(**changes: Any) -> dict[str, Any]:
    return _with(changes)


def _deep(path: str, value: Any) -> dict[str, Any]:
    """The minimal manifest with one nested spec field set, e.g. ``inferenceUnit.tps``."""
    obj = samples.manifest()
    node = obj["spec"]
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return obj


ACCEPTED = [
    pytest.param(samples.manifest(), id="minimal"),
    pytest.param(_spec(minInferenceUnits=2, maxInferenceUnits=2), id="max equals min"),
    pytest.param(_spec(minInferenceUnits=0, maxInferenceUnits=3), id="scale to zero with max"),
    pytest.param(_spec(minInferenceUnits=1000, maxInferenceUnits=1000), id="largest"),
    pytest.param(_spec(state="Stopped"), id="stopped"),
    pytest.param(_spec(zones=["us-east-1a", "eu-west-3_b.x", "a"]), id="zones"),
    pytest.param(_deep("inferenceUnit.tps", 0.25), id="fractional tps"),
    pytest.param(_deep("inferenceUnit.tps", 10000), id="largest tps"),
    pytest.param(_deep("inferenceUnit.repositorySecretName", "s3-creds.team"), id="secret"),
    pytest.param(
        _deep("inferenceUnit.resources", {"limits": {"nvidia.com/gpu": 1, "cpu": "500m"}}),
        id="resources",
    ),
    pytest.param(_deep("model.repository", "pvc://models/triton/v3"), id="pvc"),
    pytest.param(_deep("model.repository", "pvc://models"), id="pvc root"),
    pytest.param(_deep("model.repository", "/opt/kiu/triton-models"), id="path"),
    pytest.param(_deep("model.repository", "gs://bucket"), id="gcs"),
    pytest.param(_deep("model.repository", "as://account/container/dir"), id="azure"),
    pytest.param(_deep("model.repository", "s3://minio:9000/bucket/m"), id="s3 endpoint"),
    pytest.param(
        _spec(
            model={"name": "m", "repository": "s3://minio:9000/b/m", "task": "Classification"},
            inferenceUnit={"runtime": "cpu", "repositorySecretName": "s3-creds"},
        ),
        id="s3 on the cpu runtime",
    ),
    pytest.param(_deep("autoscaling.scaleDownDelaySeconds", 0), id="no scale-down delay"),
    pytest.param(_deep("model.name", "Shapes_v1.2-final"), id="model name"),
    pytest.param(_deep("inferenceUnit", samples.PLACEMENT), id="every placement field"),
]


@pytest.mark.parametrize("obj", ACCEPTED)
def test_accepted(obj: dict[str, Any]) -> None:
    assert admission.admit(obj)[1] == []


REFUSED = [
    # cross-field rules (CEL)
    pytest.param(
        _spec(minInferenceUnits=3, maxInferenceUnits=2),
        "spec: spec.maxInferenceUnits must be >= spec.minInferenceUnits",
        id="max below min",
    ),
    pytest.param(
        _spec(minInferenceUnits=0),
        "spec: spec.maxInferenceUnits is required when spec.minInferenceUnits is 0:"
        " scaling up from zero needs a ceiling",
        id="zero floor without ceiling",
    ),
    pytest.param(
        _spec(
            model={"name": "m", "repository": "/models", "task": "Classification"},
            inferenceUnit={"repositorySecretName": "creds"},
        ),
        "spec: spec.inferenceUnit.repositorySecretName is only for object-storage"
        " repositories (s3://, gs://, as://)",
        id="secret for a path",
    ),
    pytest.param(
        _spec(
            model={"name": "m", "repository": "gs://bucket/models", "task": "Classification"},
            inferenceUnit={"runtime": "cpu"},
        ),
        "spec: spec.model.repository gs:// and as:// are read by the triton runtime only:"
        " spec.inferenceUnit.runtime cpu reads s3://, pvc:// or a path",
        id="gcs on the cpu runtime",
    ),
    # formats (CEL)
    pytest.param(
        _spec(project="Shoes"),
        "spec.project: spec.project 'Shoes' must be a DNS label: lowercase letters,"
        " digits and '-', starting and ending with a letter or digit",
        id="project uppercase",
    ),
    pytest.param(
        _spec(zones=["a", "-b"]),
        "spec.zones[1]: spec.zones entry '-b' must be a label value: letters,"
        " digits, '-', '_' and '.', starting and ending with a letter or digit",
        id="zone",
    ),
    pytest.param(
        _deep("model.repository", "http://example.com/models"),
        "spec.model.repository: spec.model.repository 'http://example.com/models' must be"
        " s3://, gs:// or as:// object storage, pvc://<claim>/<path>, or an absolute path,"
        " without whitespace",
        id="repository scheme",
    ),
    pytest.param(
        _deep("model.repository", "models/relative"),
        "spec.model.repository: spec.model.repository 'models/relative' must be"
        " s3://, gs:// or as:// object storage, pvc://<claim>/<path>, or an absolute path,"
        " without whitespace",
        id="repository relative",
    ),
    pytest.param(
        _deep("model.name", "../etc"),
        "spec.model.name: spec.model.name '../etc' must start with a letter or digit"
        " and contain only letters, digits, '_', '.' and '-'",
        id="model name",
    ),
    pytest.param(
        _deep("inferenceUnit.image", "kiu unit"),
        "spec.inferenceUnit.image: spec.inferenceUnit.image 'kiu unit' must not contain whitespace",
        id="image",
    ),
    pytest.param(
        _deep("inferenceUnit.repositorySecretName", "S3_Creds"),
        "spec.inferenceUnit.repositorySecretName: spec.inferenceUnit.repositorySecretName"
        " 'S3_Creds' must be a Secret name: a DNS subdomain",
        id="secret name",
    ),
    # placement (CEL)
    pytest.param(
        _deep("inferenceUnit.nodeSelector", {"topology.kubernetes.io/zone": "a"}),
        "spec.inferenceUnit.nodeSelector: spec.inferenceUnit.nodeSelector must not set"
        " topology.kubernetes.io/zone: list the zones in spec.zones",
        id="node selector zone",
    ),
    pytest.param(
        _deep("inferenceUnit.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}]),
        "spec.inferenceUnit.tolerations[0]: spec.inferenceUnit.tolerations value must be"
        " empty when operator is Exists",
        id="toleration value with Exists",
    ),
    pytest.param(
        _deep("inferenceUnit.tolerations", [{"value": "v"}]),
        "spec.inferenceUnit.tolerations[0]: spec.inferenceUnit.tolerations with no key"
        " must have operator Exists",
        id="toleration without key",
    ),
    pytest.param(
        _deep("inferenceUnit.labels", {"kiu.dev/zone": "a"}),
        "spec.inferenceUnit.labels: spec.inferenceUnit.labels must not use kiu.dev/ or"
        " app.kubernetes.io/ keys",
        id="operator label",
    ),
    pytest.param(
        _deep("inferenceUnit.annotations", {"kiu.dev/spec-hash": "x"}),
        "spec.inferenceUnit.annotations: spec.inferenceUnit.annotations keys must be at most 316"
        " characters and not under kiu.dev/",
        id="operator annotation",
    ),
    pytest.param(
        _deep("inferenceUnit.env", [{"name": "A"}]),
        "spec.inferenceUnit.env[0]: spec.inferenceUnit.env entries need exactly one of value"
        " and valueFrom",
        id="env without value",
    ),
    pytest.param(
        _deep("inferenceUnit.env", [{"name": "A", "valueFrom": {}}]),
        "spec.inferenceUnit.env[0].valueFrom: spec.inferenceUnit.env valueFrom needs one of"
        " secretKeyRef, configMapKeyRef and fieldRef",
        id="env source missing",
    ),
    # OpenAPI keywords
    pytest.param(
        _deep("inferenceUnit.tolerations", [{"key": "k", "effect": "Sometimes"}]),
        "spec.inferenceUnit.tolerations[0].effect: unsupported value",
        id="toleration effect",
    ),
    pytest.param(
        _deep("inferenceUnit.priorityClassName", "High"),
        "spec.inferenceUnit.priorityClassName: should match",
        id="priority class name",
    ),
    pytest.param(
        _deep(
            "inferenceUnit.affinity",
            {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{}]}},
        ),
        "spec.inferenceUnit.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: required",  # noqa: E501
        id="pod affinity without topology key",
    ),
    pytest.param(
        _deep("inferenceUnit.podTemplate", {}),
        'spec.inferenceUnit.podTemplate: unknown field "spec.inferenceUnit.podTemplate"',
        id="unknown placement field",
    ),
    pytest.param(_spec(state="Paused"), "spec.state: unsupported value", id="state"),
    pytest.param(
        _spec(minInferenceUnits=-1), "spec.minInferenceUnits: should be greater", id="neg"
    ),
    pytest.param(
        _spec(minInferenceUnits=1001), "spec.minInferenceUnits: should be less", id="huge"
    ),
    pytest.param(
        _spec(maxInferenceUnits=0), "spec.maxInferenceUnits: should be greater", id="max 0"
    ),
    pytest.param(
        _deep("inferenceUnit.tps", 0),
        "spec.inferenceUnit.tps: should be greater than 0",
        id="tps 0",
    ),
    pytest.param(
        _deep("inferenceUnit.tps", -5), "spec.inferenceUnit.tps: should be greater", id="tps<0"
    ),
    pytest.param(
        _deep("inferenceUnit.tps", 10001), "spec.inferenceUnit.tps: should be less", id="tps huge"
    ),
    pytest.param(
        _deep("inferenceUnit.runtime", "gpu"),
        "spec.inferenceUnit.runtime: unsupported",
        id="runtime",
    ),
    pytest.param(_deep("model.task", "Segmentation"), "spec.model.task: unsupported", id="task"),
    pytest.param(
        _deep("autoscaling.targetUtilization", 0),
        "spec.autoscaling.targetUtilization:",
        id="target 0",
    ),
    pytest.param(
        _deep("autoscaling.targetUtilization", 1.5),
        "spec.autoscaling.targetUtilization:",
        id="target>1",
    ),
    pytest.param(
        _deep("autoscaling.stableWindowSeconds", 1),
        "spec.autoscaling.stableWindowSeconds:",
        id="stable window short",
    ),
    pytest.param(
        _deep("autoscaling.stableWindowSeconds", 7200),
        "spec.autoscaling.stableWindowSeconds:",
        id="stable window long",
    ),
    pytest.param(
        _spec(zoneOutagePolicy="Panic"), "spec.zoneOutagePolicy: unsupported", id="policy"
    ),
    pytest.param(_spec(zones=["a", "a"]), "spec.zones: duplicate value 'a'", id="zone twice"),
    pytest.param(
        _spec(zones=[f"z{i}" for i in range(17)]), "spec.zones: must have at most 16", id="zones"
    ),
    pytest.param(
        _spec(project="x" * 64), "spec.project: may not be longer than 63", id="project long"
    ),
    pytest.param(
        _spec(replicas=3), 'spec.replicas: unknown field "spec.replicas"', id="unknown field"
    ),
    pytest.param(
        _spec(minInferenceUnits="2"), "spec.minInferenceUnits: must be of type integer", id="type"
    ),
    pytest.param(
        _deep("inferenceUnit.resources", {"limits": {"cpu": 0.5}}),
        "spec.inferenceUnit.resources.limits.cpu: must be an integer or a string",
        id="fraction as number",
    ),
    pytest.param(
        _deep("inferenceUnit.resources", {"limits": {"memory": "4 GB"}}),
        "spec.inferenceUnit.resources.limits.memory: should match",
        id="quantity",
    ),
    pytest.param(
        _with({}, metadata={"name": "3d-model"}),
        "metadata.name: should match",
        id="name not DNS-1035",
    ),
    pytest.param(
        {k: v for k, v in samples.manifest().items() if k != "spec"}, "spec: required", id="no spec"
    ),
]


@pytest.mark.parametrize(("obj", "expected"), REFUSED)
def test_refused_with_a_message_naming_the_field(obj: dict[str, Any], expected: str) -> None:
    errors = admission.admit(obj)[1]
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected)


def test_every_cel_rule_is_exercised_by_a_refusal() -> None:
    """A rule no test breaks could be wrong unnoticed."""
    broken = set().union(*(admission.broken_rules(param.values[0]) for param in REFUSED))
    broken |= admission.broken_rules(_spec(project="boots"), old=samples.manifest())
    every = {
        rule["rule"]
        for _, node in admission.walk(admission.root_schema())
        for rule in node.get("x-kubernetes-validations", ())
    }
    assert every - broken == set()


def test_project_is_immutable() -> None:
    old = samples.manifest()
    assert admission.admit(_spec(project="boots"), old=old)[1] == [
        "spec.project: spec.project is immutable: it is part of the ARN"
    ]


def test_other_fields_change_freely() -> None:
    old = samples.manifest()
    new = _spec(minInferenceUnits=3, maxInferenceUnits=9, state="Stopped", zones=["a"])
    assert admission.admit(new, old=old)[1] == []
