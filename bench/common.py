"""What every benchmark shares: result files, machine facts, percentiles, targets."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def classifier(
    name: str, *, min_units: int, max_units: int, tps: float, autoscaling: dict[str, Any]
) -> dict[str, Any]:
    """A ProjectVersion of the shapes classifier on the cpu runtime (the image's models)."""
    return {
        "apiVersion": "kiu.dev/v1alpha1",
        "kind": "ProjectVersion",
        "metadata": {"name": name},
        "spec": {
            "project": "bench",
            "minInferenceUnits": min_units,
            "maxInferenceUnits": max_units,
            "model": {
                "name": "shapes-classifier",
                "repository": "/opt/kiu/triton-models",
                "task": "Classification",
            },
            "inferenceUnit": {"runtime": "cpu", "tps": tps},
            "autoscaling": autoscaling,
        },
    }


def machine() -> dict[str, Any]:
    """Facts about where and when a benchmark ran (absolute times depend on them)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write(name: str, result: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (sorted keys, stable diffs)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {**result, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    result.setdefault("machine", {})["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    # Keys in the order the benchmark wrote them (deterministic, and the order tables use).
    path.write_text(json.dumps(result, indent=2, default=_plain) + "\n")
    return path


def read(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def png(name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{name}.png"


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def target(
    value: float | None, *, at_most: float | None = None, at_least: float | None = None, text: str
) -> dict[str, Any]:
    """A figure against its target: ``{"value", "target", "met"}`` (met None if unmeasured)."""
    met: bool | None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        met = None
    else:
        met = (at_most is None or value <= at_most) and (at_least is None or value >= at_least)
    return {"value": value, "target": text, "met": met}


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{unit}"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_mib(pid: int) -> float | None:
    """The peak resident memory of a process (VmHWM), MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
