"""`kiu calibrate`: the highest request rate one running unit sustains under a latency target.

The hosted reference service publishes no throughput per inference unit and
tells its users to load-test. This does it for a kiu unit (either runtime):
it sends real images (yours with `--images DIR`, else the same generated
scenes the bundled models learned from) at fixed open-loop rates, rising
geometrically until a rate fails, then bisects between the last rate that
passed and the first that failed. A rate passes when every request succeeds
and the 99th percentile latency, measured from when each request was due (so
a client that falls behind is counted against the unit, not hidden), stays
under the target. The answer is the figure for `spec.inferenceUnit.tps`
(less some headroom, see docs/units.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from kiu import options
from kiu.imaging import scenes


@dataclass(frozen=True)
class Settings:
    latency_p99_ms: float
    step_seconds: float
    start_rate: float
    max_rate: float
    growth: float
    refinements: int
    timeout_seconds: float


@dataclass(frozen=True)
class Step:
    """One rate held for `step_seconds`."""

    rate: float
    sent: int
    succeeded: int
    failed: int
    achieved_tps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    passed: bool


#: The files `--images` takes from a directory.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_images(directory: Path) -> list[bytes]:
    """The PNG and JPEG files of `directory` (not recursive), in name order."""
    paths = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise ValueError(f"no .jpg, .jpeg or .png files in {directory}")
    return [p.read_bytes() for p in paths]


def _inputs(
    task: str | None, count: int, images: list[bytes] | None
) -> list[grpcclient.InferInput]:
    """Your images, or generated scenes of the model's task."""
    if images is None:
        kind: scenes.Kind = "detection" if task == "object_detection" else "classification"
        images = [scene.image for scene in scenes.scenes(kind, seed=7, count=count)]
    tensors = []
    for image in images:
        tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[image]], dtype=np.object_))
        tensors.append(tensor)
    return tensors


async def _hold(
    client: grpcclient.InferenceServerClient,
    model: str,
    inputs: list[grpcclient.InferInput],
    *,
    rate: float,
    settings: Settings,
) -> Step:
    """Send at `rate` per second for the step's duration, then wait for every answer."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    failures = 0

    async def one(tensor: grpcclient.InferInput, due: float) -> None:
        nonlocal failures
        try:
            await client.infer(model, [tensor], client_timeout=settings.timeout_seconds)
        except InferenceServerException:
            failures += 1
        else:
            latencies.append(loop.time() - due)

    count = max(1, round(rate * settings.step_seconds))
    start = loop.time()
    tasks = []
    for i in range(count):
        due = start + i / rate
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(inputs[i % len(inputs)], due)))
    await asyncio.gather(*tasks)
    elapsed = max(loop.time() - start, settings.step_seconds)
    p50, p95, p99 = (
        (float(v) * 1000 for v in np.percentile(latencies, [50, 95, 99]))
        if latencies
        else (math.inf,) * 3
    )
    return Step(
        rate=round(rate, 2),
        sent=count,
        succeeded=len(latencies),
        failed=failures,
        achieved_tps=round(len(latencies) / elapsed, 2),
        p50_ms=round(p50, 1),
        p95_ms=round(p95, 1),
        p99_ms=round(p99, 1),
        passed=failures == 0 and p99 <= settings.latency_p99_ms,
    )


async def calibrate(
    *, url: str, model: str, settings: Settings, images: list[bytes] | None = None
) -> dict[str, Any]:
    """Find the sustained rate with `images` (cycled) or generated scenes; returns the
    report (settings, every step, the answer)."""
    client = grpcclient.InferenceServerClient(url)
    try:
        config = (await client.get_model_config(model, as_json=True))["config"]
        task = config.get("parameters", {}).get("kiu.task", {}).get("string_value")
        inputs = _inputs(task, 32, images)
        for tensor in inputs[:8]:  # warm up: first calls pay for lazy initialisation
            await client.infer(model, [tensor])
        steps: list[Step] = []

        async def run(rate: float) -> bool:
            step = await _hold(client, model, inputs, rate=rate, settings=settings)
            steps.append(step)
            print(_row(step), flush=True)
            return step.passed

        print(_header(), flush=True)
        good, bad = 0.0, math.inf
        rate = settings.start_rate
        while rate <= settings.max_rate:
            if not await run(rate):
                bad = rate
                break
            good = rate
            rate *= settings.growth
        if math.isfinite(bad):
            for _ in range(settings.refinements):
                middle = (good + bad) / 2 if good else bad / 2
                if await run(middle):
                    good = middle
                else:
                    bad = middle
    finally:
        await client.close()
    return {
        "url": url,
        "model": model,
        "task": task,
        "images": "generated" if images is None else len(images),
        "settings": asdict(settings),
        "sustained_tps": round(good, 2),
        "capped_by_max_rate": not math.isfinite(bad),
        "steps": [asdict(step) for step in steps],
    }


def _header() -> str:
    columns = ("rate/s", "sent", "ok", "failed", "done/s", "p50 ms", "p95 ms", "p99 ms", "")
    return "".join(f"{c:>9}" for c in columns)


def _row(step: Step) -> str:
    values = (
        step.rate,
        step.sent,
        step.succeeded,
        step.failed,
        step.achieved_tps,
        step.p50_ms,
        step.p95_ms,
        step.p99_ms,
    )
    return "".join(f"{v:>9}" for v in values) + ("     pass" if step.passed else "     FAIL")


def _parser() -> argparse.ArgumentParser:
    parser = options.parser(
        prog="kiu calibrate",
        description="Load-test one running unit over gRPC and report the highest request rate "
        "it sustains with p99 latency under a target.",
    )
    parser.add_argument("--url", default="localhost:8001", help="the unit's gRPC address")
    parser.add_argument("--model", required=True, help="the model to call")
    parser.add_argument("--latency-p99-ms", type=float, default=500.0, help="target p99 latency")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--images",
        type=Path,
        help="a directory of your own .jpg/.png images to send, cycled "
        "(default: generated scenes of the model's task)",
    )
    parser.add_argument("--step-seconds", type=float, default=10.0, help="time per rate")
    parser.add_argument("--start-rate", type=float, default=2.0, help="first rate, per second")
    parser.add_argument("--max-rate", type=float, default=1000.0, help="never offer more")
    parser.add_argument("--growth", type=float, default=1.5, help="rate factor between steps")
    parser.add_argument("--refinements", type=int, default=3, help="bisection steps at the end")
    return parser


def main(argv: list[str]) -> int:
    """Print the table and the answer; exit 1 when even the first rate fails."""
    args = options.parse(_parser(), argv)
    settings = Settings(
        latency_p99_ms=args.latency_p99_ms,
        step_seconds=args.step_seconds,
        start_rate=args.start_rate,
        max_rate=args.max_rate,
        growth=args.growth,
        refinements=args.refinements,
        timeout_seconds=max(5.0, 4 * args.latency_p99_ms / 1000),
    )
    try:
        images = read_images(args.images) if args.images is not None else None
    except (OSError, ValueError) as error:
        print(f"kiu calibrate: {error}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(
            calibrate(url=args.url, model=args.model, settings=settings, images=images)
        )
    except InferenceServerException as error:
        print(f"kiu calibrate: {args.url}: {error}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    capped = " (the --max-rate cap; the unit may do more)" if report["capped_by_max_rate"] else ""
    print(
        f"\n{report['model']} at {report['url']}: sustains {report['sustained_tps']} requests/s "
        f"with p99 latency under {settings.latency_p99_ms:g} ms{capped}"
    )
    return 0 if report["sustained_tps"] > 0 else 1
