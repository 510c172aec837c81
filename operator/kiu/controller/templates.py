"""The unit pod template of a ProjectVersion: `kiu.manifests.units` plus the operator's settings.

The operator supplies what the resource leaves open: the image of each runtime,
default resources, and where the bundled model repository is on this cluster
(`--cpu-model-repository`, so the examples' `/opt/kiu/triton-models` also work
on the local cluster, whose pods are host processes).
"""

from __future__ import annotations

from typing import Any

import kiu
from kiu.api import projectversion
from kiu.controller.config import Config
from kiu.manifests import units

DEFAULT_IMAGES: dict[units.Runtime, str] = {
    "cpu": f"ghcr.io/kiu-dev/kiu:{kiu.__version__}",
    "triton": f"ghcr.io/kiu-dev/kiu-triton:{kiu.__version__}",
}
#: Requests when the spec gives no resources: enough to schedule units sensibly.
DEFAULT_RESOURCES: dict[units.Runtime, dict[str, dict[str, str]]] = {
    "cpu": {"requests": {"cpu": "250m", "memory": "256Mi"}},
    "triton": {"requests": {"cpu": "1", "memory": "2Gi"}},
}


class Unsupported(Exception):  # noqa: N818 - reads as "the spec is unsupported"
    """The unit builder cannot serve this spec; the message names the field."""


def pod_template(*, pv: projectversion.ProjectVersion, config: Config) -> dict[str, Any]:
    """The pod template of `pv`'s units; raises Unsupported naming the field at fault."""
    spec = pv.spec
    unit = spec.inference_unit
    try:
        source = units.repository_source(
            _repository(spec.model.repository, runtime=unit.runtime, config=config),
            credentials_secret=unit.repository_secret_name,
        )
    except ValueError as exc:
        raise Unsupported(f"spec.model.repository: {exc}") from exc
    images = {"cpu": config.unit_image, "triton": config.triton_image}
    limits, requests = dict(unit.resources.limits), dict(unit.resources.requests)
    resources: dict[str, Any] = {
        key: value for key, value in (("limits", limits), ("requests", requests)) if value
    }
    try:
        return units.unit_pod_template(
            runtime=unit.runtime,
            model=spec.model.name,
            repository=source,
            image=unit.image or images[unit.runtime] or DEFAULT_IMAGES[unit.runtime],
            resources=resources or DEFAULT_RESOURCES[unit.runtime],
            placement=unit.pod_fields(),
            log_format=config.unit_log_format,
        )
    except ValueError as exc:
        raise Unsupported(f"spec.inferenceUnit: {exc}") from exc


def _repository(uri: str, *, runtime: units.Runtime, config: Config) -> str:
    """The bundled repository path, moved to where this cluster has it (cpu runtime)."""
    bundled = units.BUNDLED_REPOSITORY
    if runtime != "cpu" or not config.cpu_model_repository:
        return uri
    if uri == bundled or uri.startswith(f"{bundled}/"):
        return config.cpu_model_repository.rstrip("/") + uri.removeprefix(bundled)
    return uri
