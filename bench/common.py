"""What every benchmark shares: result files, machine facts, percentiles, targets."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
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
    """Facts about where, when and on what code a benchmark ran (figures depend on them).

    ``tree_clean`` says whether the checkout matched ``commit`` (no tracked file
    changed, nothing untracked outside ``bench/results``) when the run started.
    """
    commit = _git("rev-parse", "--short", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=normal", "--", ".", ":!bench/results")
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": commit or "",
        "tree_clean": None if commit is None or status is None else status == "",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _git(*args: str) -> str | None:
    """Output of a git command in the repository, or None if git is not there."""
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


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


#: Independent repetitions of every measurement in one invocation (figures are their median).
REPETITIONS = 3

Spread = dict[str, Any]


def spread(values: Iterable[float | None], *, digits: int = 3) -> Spread | None:
    """The median of repeated measurements with their min and max (None if none measured).

    ``{"median", "min", "max", "n", "values"}``: a figure is reported with its spread,
    and a verdict is taken on the median, never on a run picked after the fact.
    """
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None
    return {
        "median": round(statistics.median(present), digits),
        "min": round(min(present), digits),
        "max": round(max(present), digits),
        "n": len(present),
        "values": [round(v, digits) for v in present],
    }


def median(figure: Spread | float | None) -> float | None:
    """The median of a spread (a plain number is its own median)."""
    if figure is None or isinstance(figure, int | float):
        return figure
    value: float = figure["median"]
    return value


def show(figure: Spread | float | None, digits: int = 2, unit: str = "") -> str:
    """``median [min, max]`` of a spread (``-`` if unmeasured); a plain number as is."""
    if figure is None or isinstance(figure, int | float):
        return fmt(figure, digits, unit)
    if figure["n"] == 1:
        return fmt(figure["median"], digits, unit)
    return (
        f"{fmt(figure['median'], digits, unit)} "
        f"[{fmt(figure['min'], digits)}, {fmt(figure['max'], digits)}]"
    )


def target(
    value: Spread | float | None,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
    text: str,
) -> dict[str, Any]:
    """A figure against its target: ``{"value", "min", "max", "target", "met"}``.

    A spread is judged on its median; ``met`` is None if the figure was not measured.
    """
    low = high = None
    if isinstance(value, dict):
        low, high = value["min"], value["max"]
        value = value["median"]
    met: bool | None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        met = None
    else:
        met = (at_most is None or value <= at_most) and (at_least is None or value >= at_least)
    return {"value": value, "min": low, "max": high, "target": text, "met": met}


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
