"""Rendering charts/kiu with the pinned helm, and reading what it renders."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.fixtures import BIN, REPO

CHART = REPO / "charts" / "kiu"
VALUES = Path(__file__).resolve().parent / "values"
VALUES_FILES = sorted(VALUES.glob("*.yaml"))
HELM = BIN / "helm"
#: The Kubernetes version the local cluster runs (hack/versions.env).
KUBE_VERSION = "1.36.3"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm with no cluster and no user configuration."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "HELM_CACHE_HOME": str(REPO / ".kiu" / "helm" / "cache"),
        "HELM_CONFIG_HOME": str(REPO / ".kiu" / "helm" / "config"),
        "HELM_DATA_HOME": str(REPO / ".kiu" / "helm" / "data"),
        "KUBECONFIG": "/dev/null",
    }
    proc = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def template(
    *values_files: Path,
    set_values: Iterable[str] = (),
    namespace: str = "kiu-system",
    release: str = "kiu",
) -> list[dict[str, Any]]:
    """The objects `helm template` renders (empty documents dropped); RenderError if helm
    refuses."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    args += ["--kube-version", KUBE_VERSION, "--include-crds"]
    for path in values_files:
        args += ["--values", str(path)]
    for item in set_values:
        args += ["--set", item]
    proc = helm(*args, check=False)
    if proc.returncode != 0:
        raise RenderError(proc.stderr)
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


class RenderError(Exception):
    """helm refused the values (the schema) or failed to render."""


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = of_kind(objects, kind, name)
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]


def of_kind(
    objects: list[dict[str, Any]], kind: str, name: str | None = None
) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every workload."""
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    ]


def args_of(objects: list[dict[str, Any]], deployment: str) -> list[str]:
    (container,) = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return [*container["command"], *container["args"]]
