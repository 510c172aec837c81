"""The chart's `helm test` script (charts/kiu/files/helm-test.py) against a real gateway.

The chart renders the script into a test Pod (tests/chart checks that); here it runs as
that Pod runs it, a Python with kiu installed, against a gateway on a loopback socket.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from tests.cluster.fixtures import REPO

from .conftest import NAMESPACE, directory, project_arn, version
from .signing import ACCESS_KEY, SECRET_KEY

SCRIPT = (REPO / "charts" / "kiu" / "files" / "helm-test.py").read_text()


async def _hook(url: str, *, project: str = "", secret: str = SECRET_KEY) -> tuple[int, str]:
    missing = f"arn:kiu:rekognition:{NAMESPACE}:000000000000:project/kiu-helm-test/0"
    env = {
        **os.environ,
        "KIU_TEST_ENDPOINT": url,
        "KIU_TEST_PROJECT_ARN": project or missing,
        "KIU_TEST_EXPECT_PROJECT": "true" if project else "false",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_hook_lists_a_project_and_passes_on_an_unknown_one(local: Any) -> None:
    gw = await local(directory([version("v1"), version("v2", created=1_700_000_000_001)]))
    code, out = await _hook(gw.url, project=project_arn())
    assert code == 0, out
    assert "DescribeProjectVersions: 2 versions (request " in out
    assert f"{project_arn()[: -len('/1')]}/version/v1/" in out
    code, out = await _hook(gw.url)
    assert code == 0, out
    assert "HTTP 400 ResourceNotFoundException" in out


async def test_hook_fails_when_the_gateway_refuses_or_is_not_there(local: Any) -> None:
    gw = await local(directory([version("v1")]))
    code, out = await _hook(gw.url, secret="not-the-secret")
    assert code == 1
    assert "InvalidSignatureException" in out
    code, out = await _hook(gw.url, project=project_arn(project="nothing"))
    assert code == 1
    assert "ResourceNotFoundException" in out
    await gw.gateway.stop()
    code, out = await _hook(gw.url)
    assert code == 1
    assert "did not answer" in out
