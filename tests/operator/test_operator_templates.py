"""The unit pod template the operator asks for: images, defaults, the bundled repository."""

from __future__ import annotations

from typing import Any

import pytest

from kiu.api import projectversion
from kiu.controller import templates
from kiu.controller.config import Config
from kiu.manifests import units


def _pv(**spec: Any) -> projectversion.ProjectVersion:
    body = {
        "metadata": {
            "name": "shoes",
            "namespace": "retail",
            "uid": "u",
            "generation": 1,
            "creationTimestamp": "2025-01-01T00:00:00Z",
        },
        "spec": {
            "project": "shoes",
            "model": {
                "name": "m",
                "repository": units.BUNDLED_REPOSITORY,
                "task": "Classification",
            },
            "inferenceUnit": {"runtime": "cpu"},
            **spec,
        },
    }
    return projectversion.parse(body)


def _container(template: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = template["spec"]["containers"][0]
    return container


def test_the_bundled_repository_moves_where_this_cluster_has_it() -> None:
    config = Config(cpu_model_repository="/srv/models/")
    template = templates.pod_template(pv=_pv(), config=config)
    assert "--model-repository=/srv/models" in _container(template)["args"]
    other = _pv(model={"name": "m", "repository": "/data/models", "task": "Classification"})
    assert (
        "--model-repository=/data/models"
        in _container(templates.pod_template(pv=other, config=config))["args"]
    )


def test_images_and_resources_default_per_runtime() -> None:
    container = _container(templates.pod_template(pv=_pv(), config=Config(unit_image="me/kiu:1")))
    assert container["image"] == "me/kiu:1"
    assert container["resources"] == templates.DEFAULT_RESOURCES["cpu"]
    own = _pv(
        inferenceUnit={"runtime": "cpu", "image": "x/y:2", "resources": {"limits": {"cpu": 2}}}
    )
    container = _container(templates.pod_template(pv=own, config=Config(unit_image="me/kiu:1")))
    assert container["image"] == "x/y:2"
    assert container["resources"] == {"limits": {"cpu": 2}}


def test_cpu_units_log_in_the_operators_format() -> None:
    """One log pipeline parses the operator's and the cpu units' lines alike."""
    json_units = templates.pod_template(pv=_pv(), config=Config(unit_log_format="json"))
    assert "--log-format=json" in _container(json_units)["args"]
    triton = _pv(inferenceUnit={"runtime": "triton"})
    args = _container(templates.pod_template(pv=triton, config=Config(unit_log_format="json")))[
        "args"
    ]
    assert not any(arg.startswith("--log-format") for arg in args)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"inferenceUnit": {"runtime": "cpu", "resources": {"limits": {"nvidia.com/gpu": 1}}}},
            "spec.inferenceUnit",
        ),
    ],
)
def test_what_the_builder_cannot_serve_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(templates.Unsupported, match=f"^{field}: "):
        templates.pod_template(pv=_pv(**spec), config=Config())
