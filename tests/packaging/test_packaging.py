"""What ``pip install kiu`` brings, the images' lock files, and the licence.

``pip install kiu`` is the operator and the gateway; the cpu runtime (kserve,
onnxruntime, Pillow) comes with ``kiu[unit]`` only. The dependency closures here are
walked through the metadata of the distributions installed in this environment (the
``dev`` extra installs all of them), the same metadata pip resolves with. ``make
lean-check`` does the real thing: ``pip install .`` in a fresh virtual environment.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.cluster.fixtures import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
BASE = [Requirement(r) for r in PROJECT["dependencies"]]
UNIT = [Requirement(r) for r in PROJECT["optional-dependencies"]["unit"]]
#: What only the cpu runtime needs: never in the operator's and gateway's install.
CPU_RUNTIME = {"kserve", "onnxruntime", "pillow", "gevent", "geventhttpclient"}


def _closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution ``requirements`` install, extras and markers applied."""
    seen: dict[str, set[str]] = {}
    todo = [r for r in requirements if _applies(r, set())]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = seen.get(name, set())
        if name in seen and set(requirement.extras) <= extras:
            continue
        seen[name] = extras | set(requirement.extras)
        for line in metadata.requires(name) or []:
            child = Requirement(line)
            if _applies(child, seen[name]):
                todo.append(child)
    return set(seen)


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether a requirement of a distribution installed with ``extras`` applies here."""
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": e}) for e in {""} | extras)


def test_pip_install_kiu_leaves_out_the_cpu_runtime() -> None:
    lean = _closure(BASE)
    assert {"kopf", "kubernetes-asyncio", "tritonclient", "grpcio", "aiohttp"} <= lean
    assert not lean & CPU_RUNTIME, sorted(lean & CPU_RUNTIME)
    assert {"kserve", "onnxruntime", "pillow"} <= _closure(BASE + UNIT)


# A Python that cannot import what only the unit extra installs, running `kiu`.
_WITHOUT_CPU_RUNTIME = """
import importlib.abc, sys
ABSENT = {"kserve", "onnxruntime", "PIL", "gevent", "geventhttpclient"}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT or name.startswith("tritonclient.http"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Absent())
from kiu import cli
raise SystemExit(cli.main(sys.argv[1:]))
"""


def _kiu_without_cpu_runtime(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_CPU_RUNTIME, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", ["operator", "gateway"])
def test_operator_and_gateway_run_without_the_cpu_runtime(command: str) -> None:
    done = _kiu_without_cpu_runtime(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: kiu {command}")


@pytest.mark.parametrize(
    "args",
    [
        ["calibrate", "--help"],
        ["unit", "--model", "m", "--model-repository", "/nonexistent", "--http-port", "0"],
    ],
)
def test_cpu_runtime_commands_name_the_extra_they_need(args: list[str]) -> None:
    done = _kiu_without_cpu_runtime(*args)
    assert done.returncode == 2
    assert done.stderr == f"kiu {args[0]}: needs the cpu runtime: pip install 'kiu[unit]'\n"


# --- the images' lock files -----------------------------------------------------------


def _pins(lock: Path) -> dict[str, tuple[list[Version], set[str], int]]:
    """name -> (pinned versions, what it is required by, hashes) of a `make lock` file."""
    pins: dict[str, tuple[list[Version], set[str], int]] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    for entry in entries:
        if entry.startswith("#"):
            continue
        head = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", entry)
        assert head, entry[:80]
        name = canonicalize_name(head.group(1))
        via = set(re.findall(r"#\s+(?:via\s+)?([A-Za-z0-9_.\-]+)", entry))
        versions, parents, hashes = pins.get(name, ([], set(), 0))
        versions.append(Version(head.group(2)))
        pins[name] = (versions, parents | via, hashes + entry.count("--hash=sha256:"))
    return pins


def _check_lock(lock: Path, requirements: list[Requirement], *, parent: str) -> None:
    """Every requirement pinned within its bounds, nothing else pinned for the project,
    every pin with its hashes: else the lock is stale (`make lock`)."""
    pins = _pins(lock)
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock.name} lacks {name}: run `make lock`"
        for version in pins[name][0]:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock.name} pins {name}=={version} outside {requirement.specifier}: "
                "run `make lock`"
            )
    direct = {n for n, (_, parents, _) in pins.items() if parent in parents}
    assert direct == {canonicalize_name(r.name) for r in requirements}, "run `make lock`"
    assert all(hashes for _, _, hashes in pins.values())


def test_image_lock_is_current_with_pyproject() -> None:
    _check_lock(REPO / "docker" / "kiu" / "requirements.lock", BASE + UNIT, parent="kiu")


def test_triton_image_lock_is_current_with_its_requirements() -> None:
    source = REPO / "docker" / "triton" / "requirements.in"
    wanted = [
        Requirement(line)
        for line in source.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    _check_lock(REPO / "docker" / "triton" / "requirements.lock", wanted, parent="-r")
    # The Python-backend steps import numpy and Pillow within kiu's own bounds.
    declared = {canonicalize_name(r.name): r.specifier for r in BASE + UNIT}
    for requirement in wanted:
        bounds = declared[canonicalize_name(requirement.name)]
        assert set(requirement.specifier) >= set(bounds), requirement


@pytest.mark.parametrize("dockerfile", ["kiu", "triton"])
def test_images_install_from_their_lock_with_hashes(dockerfile: str) -> None:
    text = (REPO / "docker" / dockerfile / "Dockerfile").read_text()
    assert f"docker/{dockerfile}/requirements.lock" in text
    assert re.search(r"pip install[^\n]*\\?\s*[^\n]*--require-hashes --no-deps -r", text)


def test_licence_is_the_apache_licence_pyproject_names() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    backend = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]
    (setuptools,) = (Requirement(r) for r in backend["requires"] if r.startswith("setuptools"))
    # PEP 639 licence expressions need setuptools 77.
    assert setuptools.specifier.contains("77.0")
    assert not setuptools.specifier.contains("76.9")
