"""Golden-file and property tests of the inference-unit pod templates (both runtimes).

Regenerate the golden files after an intended change with KIU_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiu.manifests import units

GOLDEN = Path(__file__).parent / "golden"
LABELS = {"kiu.dev/projectversion": "shoes-v3", "app.kubernetes.io/component": "inference-unit"}
TRITON_IMAGE = "example.com/kiu-triton:25.06"
KIU_IMAGE = "example.com/kiu:0.1.0"


def _golden(name: str, obj: dict[str, Any]) -> None:
    path = GOLDEN / f"unit-{name}.yaml"
    if os.environ.get("KIU_UPDATE_GOLDEN"):
        path.write_text(yaml.safe_dump(obj, sort_keys=True))
    assert yaml.safe_load(path.read_text()) == obj, f"{path} differs; KIU_UPDATE_GOLDEN=1 to update"


CASES: dict[str, dict[str, Any]] = {
    "triton-s3-gpu": {
        "runtime": "triton",
        "model": "shoes",
        "repository": units.repository_source("s3://models/retail", credentials_secret="s3-creds"),
        "image": TRITON_IMAGE,
        "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}, "requests": {"cpu": "2"}},
    },
    "triton-gcs": {
        "runtime": "triton",
        "model": "shoes",
        "repository": units.repository_source("gs://models/retail", credentials_secret="gcs-key"),
        "image": TRITON_IMAGE,
    },
    "triton-pvc": {
        "runtime": "triton",
        "model": "shapes-detector",
        "repository": units.repository_source("pvc://model-store/retail/v3"),
        "image": TRITON_IMAGE,
    },
    "triton-placed": {
        "runtime": "triton",
        "model": "shoes",
        "repository": units.repository_source("s3://models/retail"),
        "image": TRITON_IMAGE,
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "placement": {
            "nodeSelector": {"kiu.dev/pool": "gpu"},
            "tolerations": [
                {"key": "kiu.dev/pool", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "gpu.model", "operator": "In", "values": ["l4"]}
                                ]
                            }
                        ]
                    }
                }
            },
            "priorityClassName": "inference-high",
            "serviceAccountName": "model-reader",
            "runtimeClassName": "nvidia",
            "imagePullSecrets": [{"name": "registry"}],
            "labels": {"team": "retail"},
            "annotations": {"sidecar.istio.io/inject": "false"},
            "env": [{"name": "LOG_VERBOSE", "value": "1"}],
        },
    },
    "cpu-bundled": {
        "runtime": "cpu",
        "model": "shapes-classifier",
        "repository": units.LocalPath(units.BUNDLED_REPOSITORY),
        "image": KIU_IMAGE,
        "resources": {"requests": {"cpu": "1", "memory": "512Mi"}},
    },
    "cpu-s3": {
        "runtime": "cpu",
        "model": "shoes",
        "repository": units.repository_source(
            "s3://minio.storage:9000/models/retail", credentials_secret="s3-creds"
        ),
        "image": KIU_IMAGE,
    },
}


@pytest.mark.parametrize("name", CASES)
def test_pod_template_matches_golden(name: str) -> None:
    _golden(name, units.unit_pod_template(**CASES[name], labels=LABELS))


@pytest.mark.parametrize("name", CASES)
def test_every_unit_is_locked_down_and_probed_on_tritons_ports(name: str) -> None:
    template = units.unit_pod_template(**CASES[name], labels=LABELS)
    user_labels = CASES[name].get("placement", {}).get("labels", {})
    assert template["metadata"]["labels"] == {
        **user_labels,
        **LABELS,
        "kiu.dev/runtime": CASES[name]["runtime"],
    }
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {(p["name"], p["containerPort"]) for p in container["ports"]} == {
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    }
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert (
        container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
        >= 300
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"
    volumes = {v["name"] for v in spec["volumes"]}
    assert set(mounts.values()) == volumes, "every volume mounted, every mount backed"
    assert spec["terminationGracePeriodSeconds"] > units.DRAIN_SECONDS


def test_triton_loads_one_model_explicitly_from_the_repository_uri() -> None:
    (container,) = units.unit_pod_template(**CASES["triton-s3-gpu"])["spec"]["containers"]
    assert container["command"] == ["tritonserver"]
    assert "--model-repository=s3://models/retail" in container["args"]
    assert "--model-control-mode=explicit" in container["args"]
    assert "--load-model=shoes" in container["args"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert {"name": "TRITON_AWS_MOUNT_DIRECTORY", "value": "/var/cache/kiu/models"} in container[
        "env"
    ]


def test_cpu_runtime_runs_kiu_unit_on_a_plain_path() -> None:
    template = units.unit_pod_template(
        runtime="cpu",
        model="shapes-classifier",
        repository=units.repository_source("/home/dev/kiu/triton-models"),
        image=KIU_IMAGE,
    )
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["kiu"]
    assert container["args"][:3] == [
        "unit",
        "--model-repository=/home/dev/kiu/triton-models",
        "--model=shapes-classifier",
    ]
    assert [v["name"] for v in template["spec"]["volumes"]] == ["tmp"]
    assert "tolerations" not in template["spec"]


def test_a_gpu_request_tolerates_gpu_nodes() -> None:
    spec = units.unit_pod_template(**CASES["triton-s3-gpu"])["spec"]
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/models", units.ObjectStorage("s3://bucket/models")),
        ("as://account/container", units.ObjectStorage("as://account/container")),
        ("pvc://claim", units.VolumeClaim("claim")),
        ("pvc://claim/a/b/", units.VolumeClaim("claim", "a/b")),
        ("/opt/kiu/triton-models", units.LocalPath("/opt/kiu/triton-models")),
    ],
)
def test_repository_sources_parse(uri: str, expected: units.RepositorySource) -> None:
    assert units.repository_source(uri) == expected


@pytest.mark.parametrize("uri", ["relative/path", "http://example.com/models", "pvc://", ""])
def test_unknown_repository_sources_are_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="repository"):
        units.repository_source(uri)


def test_the_cpu_runtime_copies_an_s3_model_into_the_cache_triton_uses() -> None:
    (container,) = units.unit_pod_template(**CASES["cpu-s3"])["spec"]["containers"]
    assert container["command"] == ["kiu"]
    assert "--model-repository=s3://minio.storage:9000/models/retail" in container["args"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert {"name": "TRITON_AWS_MOUNT_DIRECTORY", "value": "/var/cache/kiu/models"} in container[
        "env"
    ]


@pytest.mark.parametrize("uri", ["gs://b/m", "as://account/container/m"])
def test_the_cpu_runtime_refuses_what_only_triton_reads(uri: str) -> None:
    with pytest.raises(ValueError, match="gs:// and as:// need the triton runtime"):
        units.unit_pod_template(
            runtime="cpu", model="m", repository=units.ObjectStorage(uri), image=KIU_IMAGE
        )


def test_the_cpu_runtime_refuses_a_gpu() -> None:
    with pytest.raises(ValueError, match="the cpu runtime uses no GPU"):
        units.unit_pod_template(
            runtime="cpu",
            model="m",
            repository=units.LocalPath("/m"),
            image=KIU_IMAGE,
            resources={"limits": {"nvidia.com/gpu": 1}},
        )


def test_builder_is_deterministic_and_keeps_its_inputs() -> None:
    resources = {"limits": {"nvidia.com/gpu": 1}}
    first = units.unit_pod_template(**{**CASES["triton-s3-gpu"], "resources": resources})
    first["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "9"
    assert resources == {"limits": {"nvidia.com/gpu": 1}}
    again = units.unit_pod_template(**{**CASES["triton-s3-gpu"], "resources": resources})
    assert again == units.unit_pod_template(**{**CASES["triton-s3-gpu"], "resources": resources})
