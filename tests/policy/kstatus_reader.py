"""The kstatus library (sigs.k8s.io/cli-utils) as the tests call it: hack/go/kstatus,
built on first use (Go's build cache makes a rebuild cheap)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.fixtures import REPO

TOOL = REPO / "hack" / "go" / "kstatus"
BINARY = REPO / "hack" / ".cache" / "kstatus" / "kstatus"


def reader() -> Callable[..., list[str]]:
    """A function reading objects (dicts) to their kstatus status, in order."""
    newest = max(path.stat().st_mtime for path in TOOL.iterdir())
    if not BINARY.exists() or BINARY.stat().st_mtime < newest:
        if shutil.which("go") is None:
            pytest.skip("Go is needed to build the kstatus library (as for hack/build.sh)")
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
        subprocess.run(
            ["go", "build", "-o", str(BINARY), "."], cwd=TOOL, env=env, check=True, timeout=900
        )

    def read(*objects: dict[str, Any]) -> list[str]:
        done = subprocess.run(
            [str(BINARY)], input=json.dumps(objects), capture_output=True, text=True, check=True
        )
        return [reading["status"] for reading in json.loads(done.stdout)]

    return read
