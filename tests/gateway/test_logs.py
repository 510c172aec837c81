"""`kiu gateway --log-format json`: every line about a call names the request id the
client got back as x-amzn-RequestId."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from . import processes
from .conftest import arn, directory, png, rekognition, version, write


def test_log_lines_about_a_call_carry_its_request_id(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    silent = processes.free_port()  # nothing listens here: the unit does not answer
    write(path, directory([version("v1", units=[(processes.HOST, silent, "a")])]))
    with processes.gateway(path, tmp_path, "--log-format", "json") as gw:
        with pytest.raises(ClientError) as refused:
            rekognition(gw.port).detect_custom_labels(
                ProjectVersionArn=arn("v1"), Image={"Bytes": png()}
            )
        request_id = refused.value.response["ResponseMetadata"]["RequestId"]
        log = gw.process.log
        processes.wait_until(
            lambda: request_id in log.read_text(),
            timeout=30,
            what="the gateway's log line about the call",
            process=gw.process,
        )
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    about = [line for line in lines if line.get("request_id") == request_id]
    assert about
    assert any("did not answer" in line["message"] for line in about)
    assert all(line["level"] in {"INFO", "WARNING", "ERROR"} for line in about)
    assert {"time", "level", "logger", "message"} <= set(about[0])
    # Lines about no call (start-up, shutdown) carry no request id.
    assert any("request_id" not in line for line in lines)
