"""Golden-file and property tests of the per-zone Deployment, Service and PDB builders.

Regenerate the golden files after an intended change with KIU_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiu.manifests import workload

GOLDEN = Path(__file__).parent / "golden"

POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"example.com/team": "vision"}},
    "spec": {
        "nodeSelector": {"example.com/pool": "inference"},
        "containers": [
            {
                "name": "unit",
                "image": "example.com/unit:1",
                "ports": [
                    {"name": "http", "containerPort": 8000},
                    {"name": "grpc", "containerPort": 8001},
                    {"name": "metrics", "containerPort": 8002},
                    {"containerPort": 9999},
                ],
            }
        ],
    },
}
OWNER = workload.owner_reference(
    api_version="kiu.dev/v1alpha1",
    kind="ProjectVersion",
    name="shoes-v3",
    uid="0b7c5c3e-1a2b-4c3d-8e9f-001122334455",
)
COMMON = {"project_version": "shoes-v3", "project": "shoes", "namespace": "retail", "owner": OWNER}


def _deployment(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        **COMMON,
        "zone": "zone-a",
        "replicas": 2,
        "pod_template": POD_TEMPLATE,
        **overrides,
    }
    return workload.deployment(**args)


def _golden(name: str, obj: dict[str, Any]) -> None:
    path = GOLDEN / f"workload-{name}.yaml"
    text = yaml.safe_dump(obj, sort_keys=True)
    if os.environ.get("KIU_UPDATE_GOLDEN"):
        path.write_text(text)
    assert yaml.safe_load(path.read_text()) == obj, f"{path} differs; KIU_UPDATE_GOLDEN=1 to update"


def test_deployment_matches_golden() -> None:
    _golden("deployment", _deployment())


def test_service_matches_golden() -> None:
    _golden("service", workload.service(**COMMON, pod_template=POD_TEMPLATE))


def test_pdb_matches_golden() -> None:
    _golden("pdb", workload.pod_disruption_budget(**COMMON))


def test_resizing_leaves_the_pod_template_alone() -> None:
    small, large = _deployment(replicas=1), _deployment(replicas=7)
    assert small["spec"]["template"] == large["spec"]["template"]
    assert small["spec"]["selector"] == large["spec"]["selector"]
    hash_of = workload.SPEC_HASH_ANNOTATION
    assert small["metadata"]["annotations"][hash_of] != large["metadata"]["annotations"][hash_of]


def test_builders_are_deterministic_and_do_not_mutate_the_template() -> None:
    before = yaml.safe_dump(POD_TEMPLATE)
    assert _deployment() == _deployment()
    assert yaml.safe_dump(POD_TEMPLATE) == before


def test_zone_deployment_selects_only_its_zone() -> None:
    obj = _deployment(zone="zone-b")
    assert obj["metadata"]["name"] == "shoes-v3-zone-b"
    assert obj["spec"]["selector"]["matchLabels"][workload.ZONE_LABEL] == "zone-b"
    template = obj["spec"]["template"]
    assert template["spec"]["nodeSelector"] == {
        "example.com/pool": "inference",
        workload.TOPOLOGY_ZONE_LABEL: "zone-b",
    }
    labels = template["metadata"]["labels"]
    assert labels.items() >= obj["spec"]["selector"]["matchLabels"].items()
    assert labels["example.com/team"] == "vision"


def test_service_selects_the_units_of_every_zone() -> None:
    service = workload.service(**COMMON, pod_template=POD_TEMPLATE)
    for zone in ("zone-a", "zone-b"):
        pod_labels = _deployment(zone=zone)["spec"]["template"]["metadata"]["labels"]
        assert pod_labels.items() >= service["spec"]["selector"].items()


_DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


@pytest.mark.parametrize(
    "name",
    ["a" * 63, "b" * 200, "shoes.v3", "3d-detector", "x" * 60 + ".y"],
)
def test_long_or_unusual_names_become_valid_and_distinct(name: str) -> None:
    deployment = workload.deployment_name(project_version=name, zone="us-east-1a")
    service = workload.service_name(project_version=name)
    label = workload.label_value(name)
    assert len(deployment) <= 63
    assert _DNS_1123.fullmatch(deployment)
    assert len(service) <= 63
    assert _DNS_1035.fullmatch(service)
    assert len(label) <= 63
    assert _LABEL.fullmatch(label)
    other = name + "z"
    assert workload.deployment_name(project_version=other, zone="us-east-1a") != deployment
    assert workload.label_value(other) != label or label == name


def test_ordinary_names_are_kept() -> None:
    assert workload.service_name(project_version="shoes-v3") == "shoes-v3"
    assert workload.label_value("shoes-v3") == "shoes-v3"
    assert workload.deployment_name(project_version="shoes-v3", zone="zone-c") == "shoes-v3-zone-c"
