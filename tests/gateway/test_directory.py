"""The static source: validation, hot reload, Start/Stop kept over reloads, no secrets in logs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from kiu.gateway import catalog, command, directory, metrics, routing

from .conftest import CREATED, NAMESPACE, arn, version, write
from .conftest import directory as content_of
from .fakes import FakeTransport


def table() -> catalog.Catalog:
    return catalog.Catalog(
        pools=lambda: routing.Pool(transport=FakeTransport(), zone="a"), meters=metrics.Metrics()
    )


async def running(path: Path) -> tuple[directory.Directory, catalog.Catalog, asyncio.Task[None]]:
    source = directory.Directory(path, poll_seconds=0.02)
    source.load()
    t = table()
    task = asyncio.create_task(source.run(t))
    await asyncio.sleep(0.01)
    return source, t, task


async def wait(check: Any) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"projectVersions": [{"namespace": "retail", "name": "x"}]}, "projectVersions.0.project"),
        ({"projectVersions": [version("Bad_Name")]}, "not a ProjectVersion name"),
        ({"projectVersions": [version("v", arn=arn("other"))]}, "does not name"),
        ({"surprise": 1}, "surprise"),
        ({"accessKeys": [{"accessKeyId": "A", "secretAccessKey": 12345}]}, "secretAccessKey"),
    ],
)
def test_invalid_files_are_refused_with_the_field_named(
    tmp_path: Path, content: dict[str, Any], message: str
) -> None:
    path = tmp_path / "d.yaml"
    write(path, content)
    with pytest.raises(directory.DirectoryError, match=message) as caught:
        directory.Directory(path).load()
    assert "12345" not in str(caught.value)


def test_the_command_exits_2_on_a_bad_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("projectVersions: [1, 2")
    assert command.main(["--directory", str(path), "--port", "0"]) == 2


async def test_arn_may_be_given_instead_of_created_ms(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    entry = version("v")
    del entry["createdMs"]
    entry["arn"] = arn("v", 42)
    write(path, content_of([entry]))
    _, t, task = await running(path)
    found = t.get(NAMESPACE, "v")
    assert found is not None
    assert (found.spec.created_ms, found.spec.arn) == (42, arn("v", 42))
    task.cancel()


async def test_reload_follows_edits_and_ignores_broken_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "d.yaml"
    write(path, content_of([version("v", tps=5)]))
    _, t, task = await running(path)
    entry = t.get(NAMESPACE, "v")
    assert entry is not None
    write(path, content_of([version("v", tps=7), version("w")]))
    await wait(lambda: t.get(NAMESPACE, "w") is not None)
    assert entry.spec.tps == 7
    with caplog.at_level(logging.ERROR):
        path.write_text(
            "accessKeys: [{accessKeyId: A, secretAccessKey: hunter2, extra: 1}]\nprojectVersions: ["
        )
        await asyncio.sleep(0.2)
    assert t.get(NAMESPACE, "w") is not None  # the last good state stays
    assert "ignoring the changed directory file" in caplog.text
    assert "hunter2" not in caplog.text
    task.cancel()


async def test_start_and_stop_survive_reloads(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    write(path, content_of([version("v", minInferenceUnits=1)]))
    source, t, task = await running(path)
    await source.set_state(namespace=NAMESPACE, name="v", state="Stopped")
    entry = t.get(NAMESPACE, "v")
    assert entry is not None
    assert (entry.spec.state, entry.spec.status) == ("Stopped", "STOPPED")
    write(path, content_of([version("v", minInferenceUnits=1, tps=9)]))
    await wait(lambda: entry.spec.tps == 9)
    assert entry.spec.status == "STOPPED"
    await source.set_state(namespace=NAMESPACE, name="v", state="Running", min_units=3, max_units=5)
    assert (entry.spec.status, entry.spec.min_units, entry.spec.max_units) == ("RUNNING", 3, 5)
    write(path, content_of([version("v", units=[])]))
    await wait(lambda: len(entry.pool) == 0)
    assert entry.spec.status == "STARTING"
    assert entry.spec.created_ms == CREATED
    task.cancel()
