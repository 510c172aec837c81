"""The README's boto3 snippet, extracted from README.md and run as written against a
gateway and a real unit on loopback sockets."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from kiu.imaging import scenes
from tests.cluster.fixtures import REPO

from . import processes
from .conftest import directory, version, write
from .signing import ACCESS_KEY, SECRET_KEY


def readme_snippet() -> str:
    """The Python block that follows "Calling a model with boto3" in README.md."""
    text = (REPO / "README.md").read_text()
    after = text[text.index("Calling a model with boto3") :]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match, "README.md has no boto3 snippet"
    return match.group(1)


def test_readme_boto3_snippet_runs_as_written(
    real_units: dict[str, list[processes.Unit]], tmp_path: Path
) -> None:
    snippet = readme_snippet()
    assert 'region_name="retail"' in snippet
    unit = real_units["classifier"][0]
    path = tmp_path / "directory.yaml"
    write(
        path,
        directory(
            [
                version(
                    "shapes-classifier",
                    project="shapes",
                    units=[(unit.host, unit.grpc_port, unit.zone)],
                )
            ]
        ),
    )
    (scene,) = scenes.scenes("classification", seed=21, count=1)
    (tmp_path / "shape.png").write_bytes(scene.image)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    with processes.gateway(path, tmp_path) as gw:
        env["KIU_GATEWAY"] = gw.url
        done = subprocess.run(
            [sys.executable, "-c", snippet],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = ast.literal_eval(done.stdout.strip())
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    labels = answer["CustomLabels"]
    assert {label["Name"] for label in labels} <= set(scenes.SHAPES)
    # The scene's own shape (drawn, not predicted) is the model's first answer.
    assert labels[0]["Name"] == scene.objects[0].label
