"""Gateway overhead: a cpu-runtime unit called directly and through `kiu gateway`.

Real processes on loopback: one `kiu unit` (shapes-classifier), one trivial unit
(bench/trivial_unit.py, a fixed answer) and one `kiu gateway` with a directory
file, started and stopped with the helpers of tests/gateway/processes.py.

Every gateway figure has its baseline measured in the same run, interleaved in
rounds so that drift on a shared machine hits both alike:

* throughput and latency through the gateway (AWS JSON as boto3 sends it, and
  the native REST API) against the unit called directly over gRPC, closed loop
  at equal concurrency (paired rounds, order rotated), and open loop at fixed
  rates;
* a throttled rejection against a GET /healthz of the same gateway at the same
  rate (the HTTP round trip to that process);
* the gateway's ceiling with the trivial unit: calls per CPU-second of the
  gateway process, against /healthz of the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.gateway import processes
from tests.gateway.conftest import NAMESPACE, arn, directory, rekognition, version, write

from bench import common, loadgen
from kiu.imaging import scenes

NAME = "gateway"
MODEL = "shapes-classifier"
THROTTLED = "ProvisionedThroughputExceededException"
UNLIMITED_TPS = 1_000_000.0
CONCURRENCIES = (1, 4, 8)  # <= --unit-concurrency (8): the unit sees the same concurrency
MODES = ("direct", "awsjson", "rest")
THROTTLED_RATE = 100.0
CEILING_CONCURRENCY = 32


@contextlib.contextmanager
def serving(module: str, logs: Path, *args: str) -> Iterator[tuple[int, int]]:
    """``python -m module --port N *args`` on a free port until it listens: (port, pid)."""
    port = processes.free_port()
    name = f"{module.rpartition('.')[2]}-{port}"
    process = processes.Process(
        name, [sys.executable, "-m", module, "--port", str(port), *args], logs / f"{name}.log"
    ).start()
    try:

        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex((processes.HOST, port)) == 0

        processes.wait_until(listening, timeout=60, what=module, process=process)
        yield port, process.pid
    finally:
        process.stop(timeout=10)


@contextlib.contextmanager
def fleet(logs: Path) -> Iterator[tuple[processes.Unit, tuple[int, int], processes.Gateway]]:
    """A unit, a trivial unit (port, pid) and a gateway in front of both; all stopped after."""
    with (
        processes.units([(MODEL, "a")], logs) as started,
        serving("bench.trivial_unit", logs) as (trivial, pid),
    ):
        unit = started[0]
        path = logs / "directory.yaml"
        content = directory(
            [
                version("bench", units=[], tps=UNLIMITED_TPS),
                version("throttled", units=[], tps=0.01),
                version("trivial", units=[], tps=UNLIMITED_TPS, model="trivial"),
            ]
        )
        entries = content["projectVersions"]
        entries[0]["units"] = [unit.entry()]
        entries[1]["units"] = [unit.entry()]
        entries[2]["units"] = [{"address": processes.HOST, "grpcPort": trivial, "zone": "a"}]
        write(path, content)
        with processes.gateway(path, logs) as gw:
            yield unit, (trivial, pid), gw


def small_png() -> bytes:
    """A small PNG (64 x 64, the smallest side the API accepts): the per-call floor."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


class Clients:
    """One client per way of calling, built once (their connections stay warm)."""

    def __init__(self, unit: processes.Unit, trivial: int, gw: processes.Gateway) -> None:
        image = next(scenes.scenes("classification", seed=8, count=1)).image
        small = small_png()
        self.image_bytes, self.small_bytes = len(image), len(small)
        target = f"{processes.HOST}:{unit.grpc_port}"
        c = max(CONCURRENCIES)
        self.calls: dict[str, Any] = {
            "direct": loadgen.Direct(target, MODEL, image),
            "awsjson": loadgen.AwsJson(gw.url, arn("bench"), image, concurrency=c),
            "rest": loadgen.Rest(gw.url, NAMESPACE, "bench", image, concurrency=c),
        }
        self.throttled = {
            "awsjson": loadgen.AwsJson(gw.url, arn("throttled"), image, concurrency=64),
            "rest": loadgen.Rest(gw.url, NAMESPACE, "throttled", image, concurrency=64),
            "awsjson_small": loadgen.AwsJson(gw.url, arn("throttled"), small, concurrency=64),
        }
        self.healthz = loadgen.Get(f"{gw.internal_url}/healthz", concurrency=64)
        self.trivial = {
            "direct": loadgen.Direct(f"{processes.HOST}:{trivial}", "trivial", image),
            "awsjson": loadgen.AwsJson(gw.url, arn("trivial"), image, concurrency=64),
            "rest": loadgen.Rest(gw.url, NAMESPACE, "trivial", image, concurrency=64),
            "awsjson_small": loadgen.AwsJson(gw.url, arn("trivial"), small, concurrency=64),
        }

    async def close(self) -> None:
        everything = [
            *self.calls.values(),
            *self.throttled.values(),
            self.healthz,
            *self.trivial.values(),
        ]
        for client in everything:
            await client.close()


def pin(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of a process (new threads inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(task.name), cpus)


async def closed_section(
    clients: Clients, *, gw_pid: int, unit_pid: int, seconds: float, rounds: int
) -> dict[str, Any]:
    """Closed loop at each concurrency: direct, AWS JSON, REST in paired rounds."""
    closed: dict[str, Any] = {}
    for concurrency in CONCURRENCIES:
        per_round: list[dict[str, Any]] = []
        for r in range(rounds):
            common.log(f"gateway: closed loop, concurrency {concurrency}, round {r + 1}")
            order = MODES[r % 3 :] + MODES[: r % 3]
            row: dict[str, Any] = {}
            for mode in order:
                gw_cpu, unit_cpu = common.cpu_seconds(gw_pid), common.cpu_seconds(unit_pid)
                own = time.process_time()
                samples, window = await loadgen.closed_loop(
                    clients.calls[mode], concurrency=concurrency, seconds=seconds
                )
                s = loadgen.stats(samples, window)
                ok = s["outcomes"].get("ok", 0)
                gw_used = common.cpu_seconds(gw_pid) - gw_cpu
                s["gateway_cpu_ms_per_call"] = (
                    round(1000 * gw_used / ok, 3) if ok and mode != "direct" else None
                )
                s["unit_cpu_ms_per_call"] = (
                    round(1000 * (common.cpu_seconds(unit_pid) - unit_cpu) / ok, 3) if ok else None
                )
                s["load_generator_cpu_ms_per_call"] = (
                    round(1000 * (time.process_time() - own) / ok, 3) if ok else None
                )
                row[mode] = s
            for mode in ("awsjson", "rest"):
                row[f"{mode}_ratio"] = _ratio(row[mode]["rate_per_s"], row["direct"]["rate_per_s"])
                row[f"{mode}_added_p50_ms"] = _diff(row[mode]["p50_ms"], row["direct"]["p50_ms"])
                row[f"{mode}_added_p99_ms"] = _diff(row[mode]["p99_ms"], row["direct"]["p99_ms"])
            per_round.append(row)
        summary: dict[str, Any] = {"rounds": per_round}
        for mode in MODES:
            for key in (
                "rate_per_s",
                "p50_ms",
                "p99_ms",
                "unit_cpu_ms_per_call",
                "load_generator_cpu_ms_per_call",
            ):
                summary[f"{mode}_{key}"] = common.spread(r[mode].get(key) for r in per_round)
        for mode in ("awsjson", "rest"):
            for key in ("ratio", "added_p50_ms", "added_p99_ms"):
                summary[f"{mode}_{key}"] = common.spread(r[f"{mode}_{key}"] for r in per_round)
            summary[f"{mode}_gateway_cpu_ms_per_call"] = common.spread(
                r[mode]["gateway_cpu_ms_per_call"] for r in per_round
            )
        closed[str(concurrency)] = summary
    return closed


CEILING_PATHS = ("healthz", "direct", "awsjson", "rest", "awsjson_small", "throttled")


async def ceiling_section(
    clients: Clients, *, gw_pid: int, trivial_pid: int, seconds: float, rounds: int
) -> dict[str, Any]:
    """The gateway's CPU per call with the trivial unit, against /healthz of the same
    process in the same round: the machine-independent figure (a multiple of /healthz)."""
    calls: dict[str, loadgen.Call] = {
        "healthz": clients.healthz,
        "direct": clients.trivial["direct"],
        **{m: clients.trivial[m] for m in ("awsjson", "rest", "awsjson_small")},
        "throttled": clients.throttled["awsjson"],
    }
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        run: dict[str, Any] = {}
        for mode in CEILING_PATHS:
            common.log(f"gateway: ceiling, {mode}, round {r + 1}")
            wanted = THROTTLED if mode == "throttled" else "ok"
            gw_cpu, trivial_cpu = common.cpu_seconds(gw_pid), common.cpu_seconds(trivial_pid)
            own = time.process_time()
            samples, window = await loadgen.closed_loop(
                calls[mode], concurrency=CEILING_CONCURRENCY, seconds=seconds
            )
            s = loadgen.stats(samples, window, outcome=wanted)
            answered = s["outcomes"].get(wanted, 0)
            gw_used = common.cpu_seconds(gw_pid) - gw_cpu
            s["gateway_cores_used"] = round(gw_used / window, 3)
            s["gateway_cpu_ms_per_call"] = (
                round(1000 * gw_used / answered, 4) if answered and mode != "direct" else None
            )
            s["trivial_unit_cores_used"] = round(
                (common.cpu_seconds(trivial_pid) - trivial_cpu) / window, 3
            )
            s["load_generator_cores_used"] = round((time.process_time() - own) / window, 3)
            run[mode] = s
        floor = run["healthz"]["gateway_cpu_ms_per_call"]
        for mode in CEILING_PATHS:
            cost = run[mode]["gateway_cpu_ms_per_call"]
            run[mode]["times_healthz"] = round(cost / floor, 3) if cost and floor else None
        runs.append(run)
    ceiling: dict[str, Any] = {"concurrency": CEILING_CONCURRENCY, "rounds": runs}
    for mode in CEILING_PATHS:
        ceiling[mode] = {
            key: common.spread(run[mode][key] for run in runs)
            for key in (
                "rate_per_s",
                "p50_ms",
                "gateway_cores_used",
                "gateway_cpu_ms_per_call",
                "times_healthz",
                "load_generator_cores_used",
            )
        }
    return ceiling


async def measure(
    unit: processes.Unit,
    trivial_pid: int,
    gw: processes.Gateway,
    clients: Clients,
    *,
    seconds: float,
    rounds: int,
) -> dict[str, Any]:
    gw_pid, unit_pid = gw.process.pid, unit.process.pid
    out: dict[str, Any] = {}

    common.log("gateway: warm-up")
    for call in (*clients.calls.values(), *clients.trivial.values()):
        await loadgen.closed_loop(call, concurrency=2, seconds=1.0, max_calls=40)

    # 1. Everything shares every core (what this machine gives).
    out["closed_loop"] = await closed_section(
        clients, gw_pid=gw_pid, unit_pid=unit_pid, seconds=seconds, rounds=rounds
    )
    # 2. The unit on a core of its own; gateway and load generator on the other, in
    # both the direct and the gateway runs (a gateway does not share the unit's CPU
    # when they run in different pods on different cores or nodes).
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        everything = {*cpus}
        pin(unit_pid, {cpus[0]})
        pin(gw_pid, {cpus[1]})
        pin(os.getpid(), {cpus[1]})
        try:
            out["closed_loop_pinned"] = await closed_section(
                clients, gw_pid=gw_pid, unit_pid=unit_pid, seconds=seconds, rounds=rounds
            )
        finally:
            for pid in (unit_pid, gw_pid, os.getpid()):
                pin(pid, everything)

    # Open loop at fixed rates: fractions of what the unit served directly at the top
    # concurrency, so the unit is loaded alike whatever the machine.
    capacity = (
        common.median(out["closed_loop"][str(max(CONCURRENCIES))]["direct_rate_per_s"]) or 10.0
    )
    opened: dict[str, Any] = {}
    for fraction in (0.25, 0.5):
        rate = round(max(capacity * fraction, 1.0), 1)
        runs: list[dict[str, Any]] = []
        for r in range(rounds):
            run: dict[str, Any] = {}
            for mode in MODES[r % 3 :] + MODES[: r % 3]:
                common.log(f"gateway: open loop at {rate}/s, {mode}, round {r + 1}")
                samples, window = await loadgen.open_loop(
                    clients.calls[mode], rate=rate, seconds=seconds
                )
                run[mode] = loadgen.stats(samples, window)
            for mode in ("awsjson", "rest"):
                run[f"{mode}_added_p50_ms"] = _diff(run[mode]["p50_ms"], run["direct"]["p50_ms"])
            runs.append(run)
        row: dict[str, Any] = {
            "rate_per_s": rate,
            "fraction_of_direct_capacity": fraction,
            "rounds": runs,
        }
        for mode in MODES:
            row[mode] = {
                key: common.spread(run[mode][key] for run in runs)
                for key in ("p50_ms", "p99_ms", "lag_p99_ms")
            }
        for mode in ("awsjson", "rest"):
            row[f"{mode}_added_p50_ms"] = common.spread(run[f"{mode}_added_p50_ms"] for run in runs)
        opened[str(fraction)] = row
    out["open_loop"] = opened

    # Throttled rejections against /healthz of the same process, interleaved.
    rate = THROTTLED_RATE
    throttled: dict[str, Any] = {"rate_per_s": rate, "rounds": []}
    for r in range(rounds):
        common.log(f"gateway: throttled rejections, round {r + 1}")
        row = {}
        for mode, call in (("healthz", clients.healthz), *clients.throttled.items()):
            samples, window = await loadgen.open_loop(call, rate=rate, seconds=seconds)
            wanted = "ok" if mode == "healthz" else THROTTLED
            row[mode] = loadgen.stats(samples, window, outcome=wanted)
        row["awsjson_above_healthz_p50_ms"] = _diff(
            row["awsjson"]["p50_ms"], row["healthz"]["p50_ms"]
        )
        throttled["rounds"].append(row)
    for mode in ("healthz", *clients.throttled):
        for key in ("p50_ms", "p99_ms"):
            throttled[f"{mode}_{key}"] = common.spread(r[mode][key] for r in throttled["rounds"])
    throttled["awsjson_above_healthz_p50_ms"] = common.spread(
        r["awsjson_above_healthz_p50_ms"] for r in throttled["rounds"]
    )
    throttled["inside_gateway_mean_ms"] = _throttled_inside(gw)
    out["throttled"] = throttled
    out["ceiling"] = await ceiling_section(
        clients, gw_pid=gw_pid, trivial_pid=trivial_pid, seconds=seconds * 1.5, rounds=rounds
    )
    out["image_bytes"] = clients.image_bytes
    out["small_image_bytes"] = clients.small_bytes
    return out


def boto3_check(gw: processes.Gateway, image: bytes, calls: int) -> dict[str, Any]:
    """Sequential DetectCustomLabels with boto3 itself (client overhead included)."""
    client = rekognition(gw.port)
    latencies, outcomes = [], []
    for _ in range(calls):
        start = time.perf_counter()
        try:
            answer = client.detect_custom_labels(
                ProjectVersionArn=arn("bench"), Image={"Bytes": image}
            )
            outcomes.append("ok" if answer["CustomLabels"] else "NoLabels")
        except Exception as exc:  # a failure is a figure here, not a crash
            outcomes.append(type(exc).__name__)
        latencies.append(1000 * (time.perf_counter() - start))
    return {
        "calls": calls,
        "ok": outcomes.count("ok"),
        "p50_ms": round(common.percentile(latencies, 50) or 0.0, 3),
        "p99_ms": round(common.percentile(latencies, 99) or 0.0, 3),
    }


def _throttled_inside(gw: processes.Gateway) -> float | None:
    values = processes.metrics(gw)
    key = (("operation", "DetectCustomLabels"), ("outcome", "throttled"))
    total = values.get(("kiu_gateway_request_duration_seconds_sum", key))
    count = values.get(("kiu_gateway_request_duration_seconds_count", key))
    if not total or not count:
        return None
    return round(1000 * total / count, 4)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _diff(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def run(*, quick: bool = False) -> dict[str, Any]:
    started = common.machine()
    seconds, rounds = (1.0, 1) if quick else (2.0, common.REPETITIONS)
    with tempfile.TemporaryDirectory(prefix="kiu-bench-gateway-") as tmp:
        logs = Path(tmp)
        common.log("gateway: starting a unit, a trivial unit and a gateway")
        with fleet(logs) as (unit, (trivial, trivial_pid), gw):

            async def main() -> dict[str, Any]:
                clients = Clients(unit, trivial, gw)
                try:
                    return await measure(
                        unit, trivial_pid, gw, clients, seconds=seconds, rounds=rounds
                    )
                finally:
                    await clients.close()

            figures = asyncio.run(main())
            image = next(scenes.scenes("classification", seed=8, count=1)).image
            common.log("gateway: boto3 check")
            figures["boto3_sequential"] = boto3_check(gw, image, 10 if quick else 40)
    result = {
        "name": NAME,
        "machine": started,
        "settings": {
            "model": MODEL,
            "concurrencies": list(CONCURRENCIES),
            "seconds_per_measurement": seconds,
            "rounds": rounds,
            "gateway_options": "defaults (--unit-concurrency 8), directory file, 1 replica",
            "throttled_rate_per_s": THROTTLED_RATE,
            "ceiling_concurrency": CEILING_CONCURRENCY,
            "open_loop_rates": "0.25 and 0.5 of the direct closed-loop rate at concurrency 8",
            "pinned": "unit on one core; gateway and load generator on the other",
            "quick": quick,
        },
        "figures": figures,
        "targets": targets(figures),
    }
    plot(result)
    return result


#: Throughput through the gateway over direct, lowest median over the concurrencies.
RATIO_TARGETS = {"shared": 0.85, "pinned": 0.95}


def targets(figures: dict[str, Any]) -> dict[str, Any]:
    """Every target judged on the median of the repetitions (their min and max kept)."""
    out: dict[str, Any] = {}
    c = figures["ceiling"]
    for mode, most, what in (
        ("awsjson_small", 5.0, f"the {figures['small_image_bytes']} B image"),
        ("awsjson", 8.0, f"the {figures['image_bytes'] // 1024} KB scene"),
    ):
        out[f"gateway_cpu_per_call_x_healthz_{mode}"] = common.target(
            c[mode]["times_healthz"],
            at_most=most,
            text=f"<= {most:g}x the CPU of GET /healthz of the same process, same round "
            f"(AWS JSON, SigV4, trivial unit, {what})",
        )
    out["throttled_gateway_cpu_ms"] = common.target(
        c["throttled"]["gateway_cpu_ms_per_call"],
        at_most=0.1,
        text="<= 0.1 ms of gateway CPU per throttled call (AWS JSON, the scene image)",
    )
    for section, label in (("closed_loop", "shared"), ("closed_loop_pinned", "pinned")):
        closed = figures.get(section)
        if closed is None:
            continue
        least = RATIO_TARGETS[label]
        for mode in ("awsjson", "rest"):
            out[f"throughput_ratio_{mode}_{label}"] = common.target(
                _lowest([closed[str(n)][f"{mode}_ratio"] for n in CONCURRENCIES]),
                at_least=least,
                text=f">= {least:g} at concurrency {', '.join(map(str, CONCURRENCIES))} "
                f"(lowest median shown), {label} cores",
            )
        if label == "shared":
            for mode in ("awsjson", "rest"):
                out[f"added_p50_ms_{mode}_shared"] = common.target(
                    closed["1"][f"{mode}_added_p50_ms"],
                    at_most=1.0,
                    text="<= 1 ms at concurrency 1, shared cores",
                )
    t = figures["throttled"]
    out["throttled_p50_ms"] = common.target(
        t["awsjson_p50_ms"],
        at_most=1.0,
        text=f"<= 1 ms at the client, from the scheduled send (AWS JSON, the scene image, "
        f"{t['rate_per_s']:g}/s)",
    )
    out["throttled_p50_above_healthz_ms"] = common.target(
        t["awsjson_above_healthz_p50_ms"],
        at_most=1.0,
        text="<= 1 ms: client p50 less the p50 of GET /healthz of the same gateway, same round",
    )
    return out


def _lowest(figures: list[common.Spread | None]) -> common.Spread | None:
    present = [f for f in figures if f is not None]
    return min(present, key=lambda f: f["median"]) if present else None


def _bar(figure: common.Spread | None) -> tuple[float, float, float]:
    """Median and the distances down to min and up to max (for error bars)."""
    if figure is None:
        return 0.0, 0.0, 0.0
    return figure["median"], figure["median"] - figure["min"], figure["max"] - figure["median"]


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = result["figures"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    colours = {"direct": "black", "awsjson": "tab:blue", "rest": "tab:orange"}
    for section, style in (("closed_loop", "-"), ("closed_loop_pinned", "--")):
        closed = figures.get(section)
        if closed is None:
            continue
        label = "shared cores" if section == "closed_loop" else "unit pinned"
        xs = [int(c) for c in closed]
        for mode in MODES:
            for ax, key in ((axes[0][0], "rate_per_s"), (axes[0][1], "p50_ms")):
                bars = [_bar(closed[c][f"{mode}_{key}"]) for c in closed]
                ax.errorbar(
                    xs, [b[0] for b in bars], yerr=[[b[1] for b in bars], [b[2] for b in bars]],
                    fmt=style, color=colours[mode], marker="o", capsize=3, label=f"{mode}, {label}",
                )  # fmt: skip
    axes[0][0].set_title("closed loop: calls/s, median [min, max] (higher is better)", fontsize=9)
    axes[0][0].set_xlabel("concurrency", fontsize=8)
    axes[0][0].legend(fontsize=6)
    axes[0][1].set_title("closed loop: latency p50 (ms)", fontsize=9)
    axes[0][1].set_xlabel("concurrency", fontsize=8)
    t = figures["throttled"]
    names = ["healthz", "awsjson", "rest", "awsjson_small"]
    labels = ["GET /healthz", "throttled AWS JSON", "throttled REST", "throttled, small img"]
    x = range(len(names))
    for offset, key in ((-0.2, "p50_ms"), (0.2, "p99_ms")):
        bars = [_bar(t[f"{n}_{key}"]) for n in names]
        axes[1][0].bar(
            [i + offset for i in x], [b[0] for b in bars], 0.4,
            yerr=[[b[1] for b in bars], [b[2] for b in bars]], capsize=3, label=key[:3],
        )  # fmt: skip
    axes[1][0].axhline(1.0, color="red", lw=0.8, ls=":", label="target p50 1 ms")
    axes[1][0].set_xticks(list(x), labels, fontsize=7)
    axes[1][0].set_title(f"answers at {t['rate_per_s']:g}/s, at the client (ms)", fontsize=9)
    axes[1][0].legend(fontsize=7)
    c = figures["ceiling"]
    names = ["awsjson", "rest", "awsjson_small", "throttled"]
    bars = [_bar(c[n]["times_healthz"]) for n in names]
    axes[1][1].bar(
        ["AWS JSON", "REST", "AWS JSON, small img", "throttled"], [b[0] for b in bars],
        yerr=[[b[1] for b in bars], [b[2] for b in bars]], capsize=3,
        color=["tab:blue", "tab:orange", "tab:cyan", "gray"],
    )  # fmt: skip
    for most, colour in ((5.0, "tab:cyan"), (8.0, "tab:blue")):
        axes[1][1].axhline(most, color=colour, lw=0.8, ls=":")
    axes[1][1].set_title(
        "gateway CPU per call, trivial unit, as a multiple of GET /healthz", fontsize=9
    )
    for ax in axes.flat:
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(common.png(NAME), dpi=90)
    plt.close(fig)


def summary(result: dict[str, Any]) -> str:
    f = result["figures"]
    st = result["settings"]
    kb = f["image_bytes"] // 1024
    show = common.show
    lines = [
        f"One `kiu unit` ({st['model']}), one `kiu gateway` (directory file, defaults) and a "
        f"trivial unit on loopback; the asyncio load generator runs in the benchmark process. "
        f"Every figure is the median of {st['rounds']} repetitions in this run, shown as "
        f"`median [min, max]`; baselines are measured in the same repetition ({st['rounds']} "
        f"x {st['seconds_per_measurement']:g} s per point, order rotated). "
        f"Image: a {kb} KB PNG scene. `awsjson` = DetectCustomLabels "
        f"as boto3 sends it (botocore's SigV4 signer, body base64), `rest` = native REST with "
        f"the raw PNG, `direct` = KServe v2 gRPC straight to the unit (tritonclient). "
        f"`shared`: every process may use both cores; `pinned`: the unit has one core, the "
        f"gateway and the load generator share the other (in the direct runs too).",
        "",
        "| cores | concurrency | direct calls/s | AWS JSON / direct | REST / direct "
        "| direct p50 ms | added p50 ms, AWS JSON | added p50 ms, REST "
        "| gateway CPU ms/call, AWS JSON | unit CPU ms/call |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for section, label in (("closed_loop", "shared"), ("closed_loop_pinned", "pinned")):
        for c, v in f.get(section, {}).items():
            lines.append(
                f"| {label} | {c} | {show(v['direct_rate_per_s'], 1)} "
                f"| {show(v['awsjson_ratio'])} | {show(v['rest_ratio'])} "
                f"| {show(v['direct_p50_ms'])} | {show(v['awsjson_added_p50_ms'])} "
                f"| {show(v['rest_added_p50_ms'])} "
                f"| {show(v['awsjson_gateway_cpu_ms_per_call'])} "
                f"| {show(v['direct_unit_cpu_ms_per_call'])} |"
            )
    lines += [
        "",
        "Open loop at fixed rates (shared cores), latency p50 / p99 ms timed from each "
        "call's scheduled send (so the generator's own lateness counts), and the generator's "
        "p99 lateness:",
        "",
        "| rate | mode | p50 ms | p99 ms | generator lateness p99 ms |",
        "|---|---|---|---|---|",
    ]
    for v in f["open_loop"].values():
        for m in MODES:
            lines.append(
                f"| {v['rate_per_s']:g}/s ({v['fraction_of_direct_capacity']:.0%} of direct) "
                f"| {m} | {show(v[m]['p50_ms'])} | {show(v[m]['p99_ms'])} "
                f"| {show(v[m]['lag_p99_ms'], 1)} |"
            )
    t = f["throttled"]
    lines += [
        "",
        f"Throttled rejections (ProvisionedThroughputExceededException) at "
        f"{t['rate_per_s']:g}/s open loop, at the client, against GET /healthz of the same "
        f"gateway at the same rate: p50 / p99 ms.",
        "",
        "| call | p50 ms | p99 ms |",
        "|---|---|---|",
    ]
    for name, label in (
        ("healthz", "GET /healthz (baseline)"),
        ("awsjson", f"AWS JSON, {kb} KB image"),
        ("rest", f"REST, {kb} KB image"),
        ("awsjson_small", "AWS JSON, small image"),
    ):
        lines.append(f"| {label} | {show(t[f'{name}_p50_ms'])} | {show(t[f'{name}_p99_ms'])} |")
    lines.append(
        f"\nMean time inside the gateway of a throttled call (its own duration metric, "
        f"whole run): {common.fmt(t['inside_gateway_mean_ms'], 3)} ms."
    )
    c = f["ceiling"]
    lines += [
        "",
        f"Ceiling with the trivial unit (closed loop, concurrency {c['concurrency']}): the "
        f"gateway's CPU per call, and as a multiple of GET /healthz of the same process in "
        f"the same repetition (the figure that compares across machines).",
        "",
        "| path | calls/s | gateway cores used | gateway CPU ms/call | x /healthz | p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (
        ("healthz", "GET /healthz (baseline)"),
        ("direct", "trivial unit direct (gRPC)"),
        ("awsjson", f"AWS JSON, {kb} KB image"),
        ("rest", f"REST, {kb} KB image"),
        ("awsjson_small", f"AWS JSON, {f['small_image_bytes']} B image"),
        ("throttled", f"AWS JSON throttled, {kb} KB image"),
    ):
        v = c[name]
        lines.append(
            f"| {label} | {show(v['rate_per_s'], 0)} | {show(v['gateway_cores_used'])} "
            f"| {show(v['gateway_cpu_ms_per_call'], 3)} | {show(v['times_healthz'], 1)} "
            f"| {show(v['p50_ms'])} |"
        )
    lines += ["", "Reading the figures (computed from the medians):", ""]
    shared = f["closed_loop"].get(str(max(CONCURRENCIES)))
    if shared:
        unit_cpu = common.median(shared["direct_unit_cpu_ms_per_call"])
        gw_cpu = common.median(shared["awsjson_gateway_cpu_ms_per_call"])
        if unit_cpu and gw_cpu:
            lines.append(
                f"- At concurrency {max(CONCURRENCIES)} the unit spends {unit_cpu:.1f} ms of CPU "
                f"per call and the gateway {gw_cpu:.2f} ms (AWS JSON). When both share the same "
                f"cores and those cores are the limit, throughput through the gateway can be at "
                f"most unit / (unit + gateway) = {unit_cpu / (unit_cpu + gw_cpu):.2f} of direct; "
                f"measured {show(shared['awsjson_ratio'])}. With the gateway on cores of "
                f"its own (other pods, other nodes) that share of the CPU is not taken from the "
                f"unit."
            )
    aws, small = (
        common.median(c[m]["gateway_cpu_ms_per_call"]) for m in ("awsjson", "awsjson_small")
    )
    floor = common.median(c["healthz"]["gateway_cpu_ms_per_call"])
    if aws and small and floor:
        lines.append(
            f"- Gateway CPU per admitted call with the trivial unit: {aws:.3f} ms with the "
            f"{kb} KB image, {small:.3f} ms with a {f['small_image_bytes']} B image, "
            f"{floor:.3f} ms for GET /healthz: about {aws - small:.3f} ms grows with the body "
            f"(hashing, copies), {small - floor:.3f} ms is per call (signature, routing, the "
            f"gRPC client); the stage-by-stage profile is in docs/gateway.md."
        )
    b = f["boto3_sequential"]
    lines += [
        "",
        f"boto3 itself (sequential DetectCustomLabels through the gateway): {b['ok']} of "
        f"{b['calls']} answered, p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms "
        f"(boto3's own client work included).",
    ]
    return "\n".join(lines)
