"""Where the gateway's CPU goes, stage by stage, for one admitted AWS JSON call.

The loopback fleet of bench/gateway.py (a trivial unit answers at once, so the
gateway's own work is what is measured) under a closed loop of DetectCustomLabels
calls as boto3 sends them, while py-spy samples the gateway process without
stopping it. Each sampled stack is charged to the innermost frame that names a
stage (:data:`STAGES`); a stage's share of the samples times the gateway's CPU
per call (from /proc, same window) gives its milliseconds per call. Work in C
(gRPC's core, hashing, the kernel's socket calls) is charged to the Python line
that called it.

    python -m bench.hot_path                 # the 53 KB scene, a 156 B image, throttled
    python -m bench.hot_path --seconds 20 --repetitions 5

py-spy comes with the dev extra; it reads another process's memory, so it needs
root or ptrace rights on the gateway (which this starts itself).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.gateway import processes
from tests.gateway.conftest import arn

from bench import common, gateway, loadgen
from kiu.imaging import scenes

RATE_HZ = 250
CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class Stage:
    """A stage of a call, recognised by a frame's file and function names."""

    name: str
    file: str
    functions: frozenset[str] = frozenset()  # empty: any function of the file

    def matches(self, function: str, file: str) -> bool:
        # "pkg/" names a package anywhere in the path; anything else ends the path.
        if self.file.endswith("/"):
            where = file.startswith(self.file) or f"/{self.file}" in file
        else:
            where = file.endswith(self.file)
        return where and (not self.functions or function in self.functions)


def _stage(name: str, file: str, *functions: str) -> Stage:
    return Stage(name, file, frozenset(functions))


# Innermost matching frame wins, so specific stages come before the frames that wrap them.
STAGES: tuple[Stage, ...] = (
    _stage("SigV4: body hash", "kiu/gateway/auth.py", "_sha256"),
    _stage("SigV4: canonical request, signature", "kiu/gateway/verification.py"),
    _stage("SigV4: canonical request, signature", "kiu/sigv4.py"),
    _stage("SigV4: canonical request, signature", "hmac.py"),
    _stage("SigV4: canonical request, signature", "kiu/gateway/auth.py", "authenticate"),
    _stage("authorisation", "kiu/gateway/auth.py", "authorize", "_credentials"),
    _stage("JSON parse of the request", "kiu/gateway/awsjson.py", "split_image", "parse_object"),
    _stage("JSON parse of the request", "json/decoder.py"),
    _stage("base64 decode, parameters", "kiu/gateway/awsjson.py", "detect_params", "params"),
    _stage("budget (token bucket)", "kiu/policy/budget.py"),
    _stage("image check", "kiu/gateway/images.py"),
    _stage("unit client (KServe v2 gRPC)", "kiu/gateway/upstream.py"),
    _stage("unit client (KServe v2 gRPC)", "tritonclient/"),
    _stage("unit client (KServe v2 gRPC)", "grpc/"),
    _stage("unit client (KServe v2 gRPC)", "google/protobuf/"),
    _stage("unit client (KServe v2 gRPC)", "numpy/"),
    _stage("routing", "kiu/gateway/routing.py"),
    _stage("response encoding", "json/encoder.py"),
    _stage("response encoding", "kiu/gateway/wire.py", "json_response", "error_response"),
    _stage("response encoding", "kiu/gateway/dataplane.py", "_labels", "to_json"),
    _stage("metrics", "kiu/gateway/metrics.py"),
    _stage("metrics", "prometheus_client/"),
    _stage("body read", "kiu/gateway/wire.py", "read_body"),
    _stage("body read", "aiohttp/streams.py"),
    _stage("request id, middleware", "kiu/gateway/server.py", "_middleware"),
    _stage("request id, middleware", "uuid.py"),
    _stage("data plane steps (catalog, accounting)", "kiu/gateway/dataplane.py"),
    _stage("data plane steps (catalog, accounting)", "kiu/gateway/catalog.py"),
    _stage("data plane steps (catalog, accounting)", "kiu/gateway/hold.py"),
    _stage("AWS JSON adapter", "kiu/gateway/awsjson.py"),
    _stage("response write (aiohttp)", "aiohttp/web_response.py"),
    _stage("response write (aiohttp)", "aiohttp/http_writer.py"),
    _stage("HTTP parsing, request objects (aiohttp)", "aiohttp/"),
    _stage("HTTP parsing, request objects (aiohttp)", "multidict/"),
    _stage("HTTP parsing, request objects (aiohttp)", "yarl/"),
    _stage("connection limits (server protocol)", "kiu/gateway/server.py"),
    _stage("event loop, sockets", "asyncio/"),
    _stage("event loop, sockets", "uvloop/"),
)
OTHER = "other Python"


def classify(stack: Iterable[tuple[str, str]]) -> str:
    """The stage of one sampled stack, given as (function, file) from outermost in."""
    for function, file in reversed(list(stack)):
        for stage in STAGES:
            if stage.matches(function, file):
                return stage.name
    return OTHER


def parse_raw(text: str) -> collections.Counter[str]:
    """Samples per stage from py-spy's ``--format raw`` output (collapsed stacks)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for frame in stack.split(";"):
            function, _, where = frame.partition(" (")
            frames.append((function.strip(), where.rsplit(":", 1)[0]))
        counts[classify(frames)] += int(count)
    return counts


def table(counts: collections.Counter[str], *, cpu_ms_per_call: float) -> list[dict[str, Any]]:
    """Rows (stage, share of the samples, ms per call = share x CPU per call), largest first."""
    total = sum(counts.values())
    return [
        {
            "stage": name,
            "share_pct": round(100 * n / total, 1),
            "ms_per_call": round(cpu_ms_per_call * n / total, 4),
        }
        for name, n in counts.most_common()
    ]


async def _load(call: loadgen.Call, seconds: float, *, outcome: str = "ok") -> int:
    """Calls that ended in ``outcome``; an error if none did (a figure per call needs one)."""
    samples, _ = await loadgen.closed_loop(call, concurrency=CONCURRENCY, seconds=seconds)
    outcomes = collections.Counter(s.outcome for s in samples)
    if not outcomes[outcome]:
        raise RuntimeError(f"no call ended in {outcome}: {dict(outcomes)}")
    return outcomes[outcome]


async def profile(
    gw_pid: int, call: loadgen.Call, *, seconds: float, spy: str, out: Path, outcome: str = "ok"
) -> tuple[collections.Counter[str], float]:
    """Load the gateway with ``call`` while py-spy samples it: samples per stage, and the
    gateway's CPU per call (ms) in the same window."""
    before = common.cpu_seconds(gw_pid)
    recorder = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(gw_pid), "--rate", str(RATE_HZ), "--duration",
        str(int(seconds)), "--format", "raw", "--nonblocking", "--output", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    ok = await _load(call, seconds, outcome=outcome)
    _, err = await asyncio.wait_for(recorder.communicate(), 60)
    used = common.cpu_seconds(gw_pid) - before
    text = await asyncio.to_thread(out.read_text) if recorder.returncode == 0 else None
    if text is None:
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    return parse_raw(text), 1000 * used / ok


async def _cpu_ms_per_call(
    pid: int, call: loadgen.Call, *, warm_up: float, seconds: float
) -> float:
    """CPU (ms) of process ``pid`` per successful ``call`` over ``seconds``, after a warm-up."""
    await _load(call, warm_up)
    before = common.cpu_seconds(pid)
    ok = await _load(call, seconds)
    return 1000 * (common.cpu_seconds(pid) - before) / ok


async def healthz_cpu_ms(gw_pid: int, url: str, seconds: float) -> float:
    """CPU per GET ``url``/healthz of the process serving it, same concurrency (the HTTP
    floor; the gateway serves it on its internal port, with the same aiohttp)."""
    call = loadgen.Get(f"{url}/healthz", concurrency=CONCURRENCY)
    try:
        return await _cpu_ms_per_call(gw_pid, call, warm_up=1.0, seconds=seconds)
    finally:
        await call.close()


async def measure(
    gw_pid: int,
    url: str,
    images: dict[str, bytes],
    *,
    internal_url: str,
    seconds: float,
    repetitions: int,
    spy: str,
    logs: Path,
) -> dict[str, dict[str, Any]]:
    """Each case's stage table over the repetitions, its CPU per call and that as a
    multiple of /healthz of the same process in the same repetition (spreads)."""
    cases = [(label, "trivial", body, "ok") for label, body in images.items()]
    label, body = next(iter(images.items()))
    cases.append((f"throttled, {label}", "throttled", body, gateway.THROTTLED))
    counts: dict[str, collections.Counter[str]] = {c[0]: collections.Counter() for c in cases}
    costs: dict[str, list[float]] = {c[0]: [] for c in cases}
    floors: list[float] = []
    for rep in range(repetitions):
        for label, model, body, outcome in cases:
            call = loadgen.AwsJson(url, arn(model), body, concurrency=CONCURRENCY)
            try:
                await _load(call, 2.0, outcome=outcome)  # warm-up: connections, caches
                common.log(f"hot path: profiling AWS JSON, {label}, repetition {rep + 1}")
                samples, cost = await profile(
                    gw_pid, call, seconds=seconds, spy=spy, out=logs / "raw.txt", outcome=outcome
                )
            finally:
                await call.close()
            counts[label] += samples
            costs[label].append(cost)
        floors.append(await healthz_cpu_ms(gw_pid, internal_url, seconds / 2))
    results: dict[str, dict[str, Any]] = {}
    for label, per_rep in costs.items():
        spread = common.spread(per_rep, digits=4)
        assert spread is not None
        results[label] = {
            "gateway_cpu_ms_per_call": spread,
            "times_healthz": common.spread(c / f for c, f in zip(per_rep, floors, strict=True)),
            "samples": sum(counts[label].values()),
            "stages": table(counts[label], cpu_ms_per_call=spread["median"]),
        }
    results["GET /healthz"] = {"gateway_cpu_ms_per_call": common.spread(floors, digits=4)}
    return results


async def floor(
    pid: int, url: str, bodies: dict[str, bytes], *, seconds: float, repetitions: int
) -> dict[str, Any]:
    """CPU per POST of :mod:`bench.floor` to each version named in ``bodies`` and per GET
    /healthz of the same process, and their ratio per repetition (spreads)."""
    costs: dict[str, list[float]] = {name: [] for name in bodies}
    floors: list[float] = []
    for rep in range(repetitions):
        for name, body in bodies.items():
            call = loadgen.Rest(url, "bench", name, body, concurrency=CONCURRENCY)
            common.log(f"hot path: the design's floor, {name}, repetition {rep + 1}")
            try:
                costs[name].append(await _cpu_ms_per_call(pid, call, warm_up=2.0, seconds=seconds))
            finally:
                await call.close()
        floors.append(await healthz_cpu_ms(pid, url, seconds / 2))
    return {
        "healthz_cpu_ms_per_call": common.spread(floors, digits=4),
        **{
            name: {
                "body_bytes": len(bodies[name]),
                "cpu_ms_per_call": common.spread(per_rep, digits=4),
                "times_healthz": common.spread(c / f for c, f in zip(per_rep, floors, strict=True)),
            }
            for name, per_rep in costs.items()
        },
    }


def markdown(results: dict[str, dict[str, Any]]) -> str:
    names = [n for n, r in results.items() if "stages" in r]
    stages: list[str] = []
    for n in names:
        stages += [row["stage"] for row in results[n]["stages"] if row["stage"] not in stages]
    header = " | ".join(f"{n}: ms/call (share)" for n in names)
    lines = [f"| stage | {header} |", "|---|" + "---|" * len(names)]
    for stage in stages:
        cells = []
        for n in names:
            row = next((x for x in results[n]["stages"] if x["stage"] == stage), None)
            cells.append(f"{row['ms_per_call']:.3f} ({row['share_pct']:.0f} %)" if row else "-")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append(
        "| **gateway CPU per call, ms** | "
        + " | ".join(f"**{common.show(results[n]['gateway_cpu_ms_per_call'], 3)}**" for n in names)
        + " |"
    )
    lines.append(
        "| as a multiple of GET /healthz | "
        + " | ".join(f"{common.show(results[n]['times_healthz'], 1)}x" for n in names)
        + " |"
    )
    floor = results["GET /healthz"]["gateway_cpu_ms_per_call"]
    lines.append(
        f"\nGET /healthz of the same process: {common.show(floor, 3)} ms of CPU per call. "
        f"Stage shares are of the samples of all repetitions; CPU figures are medians "
        f"[min, max] over the repetitions."
    )
    if "floor" in results:
        f = results["floor"]
        read, infer = f["read"], f["infer"]
        lines.append(
            f"\nThe design's floor (bench/floor.py, aiohttp and the gateway's unit client "
            f"alone), CPU per call: reading a {read['body_bytes']} B body and answering, "
            f"{common.show(read['cpu_ms_per_call'], 3)} ms "
            f"({common.show(read['times_healthz'], 1)}x); that with one unit call for the "
            f"{infer['body_bytes']} B image, {common.show(infer['cpu_ms_per_call'], 3)} ms "
            f"({common.show(infer['times_healthz'], 1)}x); GET /healthz of that process "
            f"{common.show(f['healthz_cpu_ms_per_call'], 3)} ms."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="load per profile")
    parser.add_argument("--repetitions", type=int, default=common.REPETITIONS)
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found (pip install py-spy)", file=sys.stderr)
        return 2
    image = next(scenes.scenes("classification", seed=8, count=1)).image
    small = gateway.small_png()
    images = {f"{len(image) // 1024} KB scene": image, f"{len(small)} B image": small}
    started = common.machine()
    with tempfile.TemporaryDirectory(prefix="kiu-bench-hot-path-") as tmp:
        logs = Path(tmp)
        with gateway.fleet(logs) as (_, (trivial, _), gw):
            results = asyncio.run(
                measure(
                    gw.process.pid,
                    gw.url,
                    images,
                    internal_url=gw.internal_url,
                    seconds=args.seconds,
                    repetitions=args.repetitions,
                    spy=spy,
                    logs=logs,
                )
            )
            unit = f"{processes.HOST}:{trivial}"
            with gateway.serving("bench.floor", logs, "--unit", unit) as (port, pid):
                results["floor"] = asyncio.run(
                    floor(
                        pid,
                        f"http://{processes.HOST}:{port}",
                        {"read": loadgen.AwsJson.body_of(arn("throttled"), image), "infer": small},
                        seconds=args.seconds,
                        repetitions=args.repetitions,
                    )
                )
    print(
        f"commit {started['commit']} (tree clean: {started['tree_clean']}), "
        f"{started['cpus']} CPUs, load average {started['load_average'][0]} at the start, "
        f"{time.strftime('%Y-%m-%d %H:%M')}; {CONCURRENCY} concurrent calls, "
        f"py-spy at {RATE_HZ} Hz\n"
    )
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
