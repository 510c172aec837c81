"""TPS enforcement: offered load against the limit, one to three gateway replicas.

Real processes on loopback: one `kiu unit` and one to three `kiu gateway`
processes reading the same directory file (``replicas: N``) and naming each
other with ``--peer`` (the replica exchange, kiu.gateway.peers), as the ready
endpoints of the gateway's Service make them peers in a cluster.

Part 1, the sweep: offered load at 0.5x, 1x, 2x and 5x the limit, and 0.9x in
clumps, with one replica and with two replicas receiving calls round robin.

Part 2, shares that follow demand: twice the limit split 50/50, 80/20 and 100/0
over two replicas and 70/20/10 over three; one boto3 client (one keep-alive
connection, one replica); the whole load switched abruptly from one replica to
the other; 0.9x the limit split unevenly (calls wrongly throttled); gateway CPU
per call with the exchange on and off (``--exchange-period 0``), same load.
Each figure is the median of ``REPETITIONS`` runs, with min and max.

Open loop, calls at fixed intervals. Baselines measured in the same run: the
rate the generator really offered (its send times), the same 2x load to a model
without a limit, and the exchange switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from tests.gateway import processes
from tests.gateway.conftest import arn, directory, rekognition, version, write

from bench import common, loadgen
from kiu.imaging import scenes

NAME = "tps"
MODEL = "shapes-classifier"
LIMIT = 20.0  # tps per unit x 1 unit
MULTIPLES = (0.5, 1.0, 2.0, 5.0)
THROTTLED = "ProvisionedThroughputExceededException"
REPETITIONS = 3
SPLITS = {
    "50/50": (0.5, 0.5),
    "80/20": (0.8, 0.2),
    "100/0": (1.0, 0.0),
    "70/20/10": (0.7, 0.2, 0.1),
}
#: Seconds after the start of a load before its rate counts as steady: the first
#: second's burst, then the exchange's window (0.6 s) and a tick.
SETTLE = 2.0


@contextlib.contextmanager
def gateways(
    logs: Path, unit: processes.Unit, replicas: int, *, exchange: bool = True
) -> Iterator[list[processes.Gateway]]:
    """``replicas`` gateway processes; with the exchange each names the others as peers."""
    path = logs / f"directory-{replicas}.yaml"
    content = directory(
        [version("metered", units=[], tps=LIMIT), version("open", units=[], tps=1_000_000.0)],
        replicas=replicas,
    )
    for entry in content["projectVersions"]:
        entry["units"] = [unit.entry()]
    write(path, content)
    ports = [processes.free_port() for _ in range(replicas)]
    with contextlib.ExitStack() as stack:
        started = []
        for i in range(replicas):
            if exchange:
                args = [
                    a
                    for j in range(replicas)
                    if j != i
                    for a in ("--peer", f"127.0.0.1:{ports[j]}")
                ]
            else:
                args = ["--exchange-period", "0"]
            started.append(
                stack.enter_context(processes.gateway(path, logs, *args, internal_port=ports[i]))
            )
        yield started


def clumps(rate: float, seconds: float) -> list[float]:
    """`rate` calls per second, all sent at the start of each second."""
    per_second = round(rate)
    return [float(s) + i * 1e-4 for s in range(int(seconds)) for i in range(per_second)]


def measure_load(
    samples: list[loadgen.Sample],
    window: float,
    *,
    offered: float,
    limit: float,
    burst: float,
    end: float | None = None,
) -> dict[str, Any]:
    """Admitted against expected; steady rate after the first second against min(offered, limit).

    The load covers [0, end): by default until one interval after the last call left
    (a busy generator sends late, and this counts the time it really took).
    """
    admitted = [s for s in samples if s.outcome == "ok"]
    other = {s.outcome for s in samples} - {"ok", THROTTLED}
    if end is None:
        end = samples[-1].sent + 1.0 / offered
    sent_rate = len(samples) / end
    expected_rate = min(offered, limit)
    if offered <= limit:
        expected_total = float(len(samples))
    else:
        expected_total = limit * (end - 1.0 / offered) + burst
    steady = [s for s in admitted if s.sent >= 1.0]
    steady_rate = len(steady) / (end - 1.0) if end > 1.0 else None
    return {
        "offered_rate_per_s": offered,
        "sent_rate_per_s": round(sent_rate, 3),
        "calls": len(samples),
        "admitted": len(admitted),
        "throttled": sum(s.outcome == THROTTLED for s in samples),
        "other_outcomes": sorted(other),
        "expected_admitted": round(expected_total, 1),
        "admitted_error_pct": round(100 * (len(admitted) - expected_total) / expected_total, 3),
        "steady_rate_per_s": None if steady_rate is None else round(steady_rate, 3),
        "steady_error_pct": None
        if steady_rate is None
        else round(100 * (steady_rate - expected_rate) / expected_rate, 3),
        "lag_p99_ms": loadgen.stats(samples, window)["lag_p99_ms"],
    }


async def scenario(gws: list[processes.Gateway], image: bytes, *, seconds: float) -> dict[str, Any]:
    replicas = len(gws)
    clients = [
        loadgen.AwsJson(gw.url, arn(name), image, concurrency=64)
        for name in ("metered", "open")
        for gw in gws
    ]
    metered = loadgen.RoundRobin(list(clients[:replicas]))
    unlimited = loadgen.RoundRobin(list(clients[replicas:]))
    burst = LIMIT  # one second of the limit in all (each replica: its share)
    out: dict[str, Any] = {"replicas": replicas, "loads": {}}
    try:
        for multiple in MULTIPLES:
            rate = LIMIT * multiple
            common.log(f"tps: {replicas} replica(s), {multiple:g}x the limit ({rate:g}/s)")
            samples, window = await loadgen.open_loop(metered, rate=rate, seconds=seconds)
            out["loads"][f"{multiple:g}x"] = measure_load(
                samples, window, offered=rate, limit=LIMIT, burst=burst
            )
            await asyncio.sleep(1.5)  # the buckets refill before the next load
        common.log(f"tps: {replicas} replica(s), 0.9x the limit in clumps")
        samples, window = await loadgen.scheduled(metered, clumps(0.9 * LIMIT, seconds))
        out["loads"]["0.9x-clumped"] = measure_load(
            samples, window, offered=0.9 * LIMIT, limit=LIMIT, burst=burst, end=seconds
        )
        common.log(f"tps: {replicas} replica(s), 2x to a model without a limit (baseline)")
        samples, window = await loadgen.open_loop(unlimited, rate=2 * LIMIT, seconds=seconds)
        out["loads"]["2x-unlimited"] = measure_load(
            samples, window, offered=2 * LIMIT, limit=float("inf"), burst=0.0
        )
    finally:
        for client in clients:
            await client.close()
    within = [out["loads"][k] for k in ("0.5x", "1x", "0.9x-clumped")]
    calls = sum(v["calls"] for v in within)
    wrong = sum(v["throttled"] for v in within)
    out["within_limit_calls"] = calls
    out["within_limit_throttled"] = wrong
    out["wrongly_throttled_pct"] = round(100 * wrong / calls, 3) if calls else None
    over = [out["loads"][k]["steady_error_pct"] for k in ("2x", "5x")]
    out["worst_steady_error_over_limit_pct"] = max(over, key=abs)
    return out


# --- part 2: shares that follow demand -----------------------------------------------------


def weighted(calls: list[loadgen.Call], split: tuple[float, ...]) -> loadgen.RoundRobin:
    """Calls to replica i in proportion split[i], interleaved (a pattern of 10 calls)."""
    pattern: list[loadgen.Call] = []
    counts = [round(10 * share) for share in split]
    for slot in range(10):
        for i, count in enumerate(counts):
            if count and slot * count // 10 != (slot + 1) * count // 10:
                pattern.append(calls[i])
    return loadgen.RoundRobin(pattern)


def steady_error_pct(admitted: list[float], *, start: float, end: float) -> float | None:
    """Admitted per second in [start, end) against the limit, in percent."""
    if end <= start:
        return None
    rate = sum(start <= t < end for t in admitted) / (end - start)
    return round(100 * (rate - LIMIT) / LIMIT, 3)


def worst_window_over_pct(admitted: list[float], *, end: float, window: float = 10.0) -> float:
    """Over every `window`-second span of the load: the most admitted beyond the limit and
    the one-second burst, in percent of the limit over the span (negative: below)."""
    times = sorted(admitted)
    worst = 0
    j = 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + window:
            j += 1
        worst = max(worst, j - i)
    span = min(window, end)
    return round(100 * (worst - LIMIT * span - LIMIT) / (LIMIT * span), 3)


async def split_run(
    clients: list[loadgen.AwsJson], split: tuple[float, ...], *, multiple: float, seconds: float
) -> dict[str, Any]:
    rate = LIMIT * multiple
    samples, window = await loadgen.open_loop(
        weighted(list(clients), split), rate=rate, seconds=seconds
    )
    end = samples[-1].sent + 1.0 / rate
    admitted = [s.sent for s in samples if s.outcome == "ok"]
    return {
        "calls": len(samples),
        "admitted": len(admitted),
        "throttled": sum(s.outcome == THROTTLED for s in samples),
        "other": sum(s.outcome not in ("ok", THROTTLED) for s in samples),
        "steady_error_pct": steady_error_pct(admitted, start=SETTLE, end=end),
        "worst_10s_over_pct": worst_window_over_pct(admitted, end=end),
        "lag_p99_ms": loadgen.stats(samples, window)["lag_p99_ms"],
    }


async def switch_run(clients: list[loadgen.AwsJson], *, seconds: float) -> dict[str, Any]:
    """Twice the limit, all to replica 0, then at `seconds` all to replica 1."""
    rate = 2 * LIMIT
    start = time.perf_counter()

    async def call() -> str:
        late = time.perf_counter() - start >= seconds
        return await clients[1 if late else 0]()

    samples, _ = await loadgen.scheduled(
        call, [i / rate for i in range(int(rate * 2 * seconds))], start=start
    )
    admitted = [s.sent for s in samples if s.outcome == "ok"]
    end = samples[-1].sent + 1.0 / rate
    # The first d (in 0.05 s steps) after the switch from which one second admits the
    # limit within 5 %: how long the switch took to be followed.
    recovery = None
    for step in range(int((end - seconds - 1.0) / 0.05) + 1):
        d = step * 0.05
        error = steady_error_pct(admitted, start=seconds + d, end=seconds + d + 1.0)
        if error is not None and abs(error) <= 5.0:
            recovery = round(d, 2)
            break
    return {
        "calls": len(samples),
        "admitted": len(admitted),
        "recovery_s": recovery,
        "before_error_pct": steady_error_pct(admitted, start=SETTLE, end=seconds),
        "after_error_pct": steady_error_pct(admitted, start=seconds + 1.0, end=end),
        "worst_10s_over_pct": worst_window_over_pct(admitted, end=end),
    }


def boto3_run(gw: processes.Gateway, image: bytes, *, seconds: float) -> dict[str, Any]:
    """One boto3 client (its keep-alive connections all to one replica, no retries) at
    twice the limit, open loop: calls leave on schedule from a few threads sharing it,
    as an application's worker threads share one client."""
    client = rekognition(gw.port, attempts=1)
    target = arn("metered")
    interval = 1.0 / (2 * LIMIT)
    admitted: list[float] = []
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    start = time.perf_counter()

    def call(at: float) -> None:
        delay = start + at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter() - start
        try:
            client.detect_custom_labels(ProjectVersionArn=target, Image={"Bytes": image})
            outcome = "ok"
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
        with lock:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome == "ok":
                admitted.append(sent)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(call, [i * interval for i in range(int(seconds / interval))]))
    end = time.perf_counter() - start
    client.close()
    return {
        "calls": sum(outcomes.values()),
        "outcomes": outcomes,
        "sent_rate_per_s": round(sum(outcomes.values()) / end, 3),
        "steady_error_pct": steady_error_pct(admitted, start=SETTLE, end=end),
    }


def idle_cpu(gws: list[processes.Gateway], *, seconds: float) -> float:
    """Gateway CPU (all replicas) per second without calls, ms: the exchange's fixed cost."""
    pids = [gw.process.popen.pid for gw in gws]
    before = sum(common.cpu_seconds(pid) for pid in pids)
    time.sleep(seconds)
    used = sum(common.cpu_seconds(pid) for pid in pids) - before
    return round(1000 * used / seconds, 3)


async def cpu_run(
    gws: list[processes.Gateway], clients: list[loadgen.AwsJson], *, seconds: float
) -> float | None:
    """Gateway CPU (all replicas) per answered call, ms, at twice the limit split 50/50."""
    pids = [gw.process.popen.pid for gw in gws]
    before = sum(common.cpu_seconds(pid) for pid in pids)
    samples, _ = await loadgen.open_loop(
        weighted(list(clients), (0.5, 0.5)), rate=2 * LIMIT, seconds=seconds
    )
    used = sum(common.cpu_seconds(pid) for pid in pids) - before
    answered = sum(s.outcome in ("ok", THROTTLED) for s in samples)
    return round(1000 * used / answered, 3) if answered else None


def spread(values: list[float | None]) -> dict[str, Any]:
    """Median, min and max of the repetitions."""
    measured = [v for v in values if v is not None]
    if not measured:
        return {"median": None, "min": None, "max": None, "runs": values}
    return {
        "median": round(statistics.median(measured), 3),
        "min": min(measured),
        "max": max(measured),
        "runs": values,
    }


def clients_of(gws: list[processes.Gateway], image: bytes) -> list[loadgen.AwsJson]:
    return [loadgen.AwsJson(gw.url, arn("metered"), image, concurrency=64) for gw in gws]


async def pause() -> None:
    """Let the offered-rate windows empty and the buckets refill between runs."""
    await asyncio.sleep(1.5)


def shares_part(
    logs: Path, unit: processes.Unit, image: bytes, *, seconds: float, repetitions: int
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, figures: dict[str, Any]) -> None:
        runs.setdefault(name, []).append(figures)

    async def with_clients(
        gws: list[processes.Gateway], body: Callable[[list[loadgen.AwsJson]], Any]
    ) -> None:
        clients = clients_of(gws, image)
        try:
            await body(clients)
        finally:
            for client in clients:
                await client.close()

    with (
        gateways(logs, unit, 2) as two,
        gateways(logs, unit, 3) as three,
        gateways(logs, unit, 2, exchange=False) as off,
    ):
        for repetition in range(repetitions):
            common.log(f"tps shares: repetition {repetition + 1} of {repetitions}")

            async def on_two(clients: list[loadgen.AwsJson]) -> None:
                for name in ("50/50", "80/20", "100/0"):
                    await pause()
                    record(
                        f"2x {name}",
                        await split_run(clients, SPLITS[name], multiple=2.0, seconds=seconds),
                    )
                for name in ("80/20", "100/0"):
                    await pause()
                    record(
                        f"0.9x {name}",
                        await split_run(clients, SPLITS[name], multiple=0.9, seconds=seconds),
                    )
                await pause()
                record("switch 100/0 to 0/100", await switch_run(clients, seconds=seconds / 2 + 1))
                await pause()
                record("cpu exchange on", {"ms": await cpu_run(two, clients, seconds=seconds)})

            async def on_three(clients: list[loadgen.AwsJson]) -> None:
                await pause()
                record(
                    "2x 70/20/10",
                    await split_run(clients, SPLITS["70/20/10"], multiple=2.0, seconds=seconds),
                )

            async def on_off(clients: list[loadgen.AwsJson]) -> None:
                await pause()
                record("cpu exchange off", {"ms": await cpu_run(off, clients, seconds=seconds)})
                await pause()
                record(
                    "2x 80/20 exchange off",
                    await split_run(clients, SPLITS["80/20"], multiple=2.0, seconds=seconds),
                )

            asyncio.run(with_clients(two, on_two))
            asyncio.run(with_clients(three, on_three))
            asyncio.run(with_clients(off, on_off))
            time.sleep(1.5)
            record("boto3 one client", boto3_run(two[0], image, seconds=seconds))
            record("idle cpu exchange on", {"ms_per_s": idle_cpu(two, seconds=4.0)})
            record("idle cpu exchange off", {"ms_per_s": idle_cpu(off, seconds=4.0)})
    summary: dict[str, Any] = {}
    for name, figures in runs.items():
        keys = [k for k, v in figures[0].items() if isinstance(v, (int, float)) or v is None]
        summary[name] = {key: spread([f.get(key) for f in figures]) for key in keys}
    return {"runs": runs, "summary": summary}


def run(*, quick: bool = False) -> dict[str, Any]:
    started = common.machine()
    seconds = 4.0 if quick else 8.0
    repetitions = 1 if quick else REPETITIONS
    image = next(scenes.scenes("classification", seed=8, count=1)).image
    figures: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="kiu-bench-tps-") as tmp,
        processes.units([(MODEL, "a")], Path(tmp)) as started_units,
    ):
        unit = started_units[0]
        for replicas in (1, 2):
            common.log(f"tps: starting {replicas} gateway replica(s)")
            with gateways(Path(tmp), unit, replicas) as gws:
                figures[str(replicas)] = asyncio.run(scenario(gws, image, seconds=seconds))
        shares_figures = shares_part(
            Path(tmp), unit, image, seconds=seconds + 4.0, repetitions=repetitions
        )
    one, two = figures["1"], figures["2"]
    targets = {
        "admitted_rate_error_pct_1_replica": common.target(
            abs(one["worst_steady_error_over_limit_pct"]),
            at_most=5.0,
            text="within 5 % of the limit (worst of 2x and 5x, steady rate after the burst)",
        ),
        "admitted_rate_error_pct_2_replicas": common.target(
            abs(two["worst_steady_error_over_limit_pct"]),
            at_most=5.0,
            text="within 5 % of the limit (worst of 2x and 5x, round robin)",
        ),
        "wrongly_throttled_pct_1_replica": common.target(
            one["wrongly_throttled_pct"], at_most=0.5, text="< 0.5 % of calls within the limit"
        ),
        "wrongly_throttled_pct_2_replicas": common.target(
            two["wrongly_throttled_pct"], at_most=0.5, text="< 0.5 % of calls within the limit"
        ),
        **shares_targets(shares_figures["summary"], shares_figures["runs"]),
    }
    result = {
        "name": NAME,
        "machine": started,
        "settings": {
            "limit_tps": LIMIT,
            "multiples": list(MULTIPLES),
            "seconds_per_load": seconds,
            "seconds_per_share_load": seconds + 4.0,
            "repetitions": repetitions,
            "settle_s": SETTLE,
            "burst_seconds": 1.0,
            "exchange_period_s": 0.2,
            "model": MODEL,
            "split": "round robin over the replicas (even)",
            "quick": quick,
        },
        "figures": figures,
        "shares": shares_figures,
        "targets": targets,
    }
    plot(result)
    return result


def shares_targets(
    summary: dict[str, Any], runs: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    def median(name: str, key: str) -> float | None:
        value = summary.get(name, {}).get(key, {}).get("median")
        return None if value is None else float(value)

    targets: dict[str, Any] = {}
    for name in ("2x 50/50", "2x 80/20", "2x 100/0", "2x 70/20/10", "boto3 one client"):
        error = median(name, "steady_error_pct")
        targets[f"shares {name} error pct"] = common.target(
            None if error is None else abs(error),
            at_most=5.0,
            text=f"admitted within 5 % of the limit at 2x, {name} (median of the runs, "
            f"steady after {SETTLE:g} s)",
        )
    targets["shares switch recovery s"] = common.target(
        median("switch 100/0 to 0/100", "recovery_s"),
        at_most=1.0,
        text="100/0 to 0/100 at 2x: back within 5 % in <= 1 s (median)",
    )
    overs = [
        f["worst_10s_over_pct"]
        for name, figures in runs.items()
        if "exchange off" not in name
        for f in figures
        if f.get("worst_10s_over_pct") is not None
    ]
    targets["shares worst 10s over pct"] = common.target(
        max(overs) if overs else None,
        at_most=5.0,
        text="over any 10 s window at most 5 % above the limit plus the one-second burst "
        "(worst of every run with the exchange)",
    )
    within = [f for name in ("0.9x 80/20", "0.9x 100/0") for f in runs.get(name, [])]
    calls = sum(f["calls"] for f in within)
    throttled = sum(f["throttled"] for f in within)
    targets["shares wrongly throttled pct"] = common.target(
        round(100 * throttled / calls, 3) if calls else None,
        at_most=0.5,
        text="< 0.5 % of calls within the limit (0.9x split 80/20 and 100/0, all runs)",
    )
    on, off = median("cpu exchange on", "ms"), median("cpu exchange off", "ms")
    targets["shares cpu per call on vs off"] = common.target(
        round(on / off, 3) if on and off else None,
        at_most=1.0,
        text="gateway CPU per call with the exchange on / off, same load (medians); "
        "not above 1 (shared machine: see the spread)",
    )
    return targets


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limit = result["settings"]["limit_tps"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    keys = [f"{m:g}x" for m in result["settings"]["multiples"]]
    offered = [limit * m for m in result["settings"]["multiples"]]
    ax.plot(offered, [min(o, limit) for o in offered], color="black", lw=1, label="ideal")
    for replicas, marker in (("1", "o"), ("2", "s")):
        loads = result["figures"][replicas]["loads"]
        ax.plot(
            offered,
            [loads[k]["steady_rate_per_s"] for k in keys],
            marker=marker,
            ls="--",
            label=f"{replicas} replica(s): admitted after the first second",
        )
    ax.axhspan(limit * 0.95, limit * 1.05, color="green", alpha=0.1, label="limit +-5 %")
    ax.set_xlabel("offered calls/s", fontsize=8)
    ax.set_ylabel("admitted calls/s", fontsize=8)
    ax.set_title(f"admitted rate against a limit of {limit:g} TPS", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(common.png(NAME), dpi=90)
    plt.close(fig)


def summary(result: dict[str, Any]) -> str:
    st = result["settings"]
    lines = [
        f"Limit {st['limit_tps']:g} TPS (tps {st['limit_tps']:g} x 1 unit), one real "
        f"`kiu unit`, {st['seconds_per_load']:g} s of open-loop load per row, AWS JSON calls. "
        f"Two replicas: `replicas: 2` in the directory file, each naming the other with "
        f"`--peer` (the replica exchange), calls spread round robin. Steady = admitted "
        f"after the first second (the bucket starts full with one second of the limit) "
        f"divided by the time left; expected = "
        f"min(offered, limit). Total expected = min(offered, limit) x send span + the "
        f"initial burst when over the limit.",
        "",
        "| replicas | load | offered /s (sent) | admitted | expected | total error % "
        "| steady /s | steady error % | throttled | generator lag p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = [f"{m:g}x" for m in st["multiples"]]
    for replicas, data in result["figures"].items():
        loads = sorted(
            data["loads"].items(),
            key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]),
        )
        for load, v in loads:
            lines.append(
                f"| {replicas} | {load} | {v['offered_rate_per_s']:g} "
                f"({common.fmt(v['sent_rate_per_s'], 1)}) | {v['admitted']} "
                f"| {v['expected_admitted']:g} | {common.fmt(v['admitted_error_pct'])} "
                f"| {common.fmt(v['steady_rate_per_s'])} | {common.fmt(v['steady_error_pct'])} "
                f"| {v['throttled']} | {common.fmt(v['lag_p99_ms'], 1)} |"
            )
    lines += [""]
    for replicas, data in result["figures"].items():
        lines.append(
            f"- {replicas} replica(s): {data['within_limit_throttled']} of "
            f"{data['within_limit_calls']} calls within the limit (0.5x, 1x, 0.9x clumped) "
            f"throttled = {common.fmt(data['wrongly_throttled_pct'], 3)} %; worst steady "
            f"error over the limit {common.fmt(data['worst_steady_error_over_limit_pct'])} %."
        )
    shares = result.get("shares")
    if shares:
        lines += ["", *shares_summary(result["settings"], shares["summary"])]
    return "\n".join(lines)


def shares_summary(settings: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    def cell(name: str, key: str, digits: int = 2) -> str:
        v = summary.get(name, {}).get(key)
        if not v or v["median"] is None:
            return "-"
        return (
            f"{common.fmt(v['median'], digits)} ({common.fmt(v['min'], digits)} .. "
            f"{common.fmt(v['max'], digits)})"
        )

    lines = [
        f"Shares that follow demand (the replica exchange, period "
        f"{settings['exchange_period_s']:g} s): {settings['seconds_per_share_load']:g} s of "
        f"open-loop load per run, {settings['repetitions']} repetitions, median (min .. max). "
        f"Steady = admitted per second from {settings['settle_s']:g} s after the start to the "
        f"end, against the limit. Worst 10 s = the most calls admitted in any 10 s of the "
        f"run beyond the limit and the one-second burst, in % of the limit over 10 s (the "
        f"whole run when shorter). At 0.9x, -10 % steady means every call was admitted.",
        "",
        "| load | steady error % | worst 10 s over % | throttled | calls |",
        "|---|---|---|---|---|",
    ]
    for name in (
        "2x 50/50",
        "2x 80/20",
        "2x 100/0",
        "2x 70/20/10",
        "2x 80/20 exchange off",
        "0.9x 80/20",
        "0.9x 100/0",
    ):
        lines.append(
            f"| {name} | {cell(name, 'steady_error_pct')} | {cell(name, 'worst_10s_over_pct')} "
            f"| {cell(name, 'throttled', 0)} | {cell(name, 'calls', 0)} |"
        )
    switch = "switch 100/0 to 0/100"
    lines += [
        "",
        f"- One boto3 client (its keep-alive connections to one of two replicas, no retries, "
        f"8 threads sharing it) "
        f"at 2x: steady error {cell('boto3 one client', 'steady_error_pct')} %, sent "
        f"{cell('boto3 one client', 'sent_rate_per_s')} calls/s.",
        f"- All calls switched from one replica to the other at 2x: back within 5 % after "
        f"{cell(switch, 'recovery_s')} s (first 1 s window after the switch, in 0.05 s "
        f"steps, admitting the limit within 5 %); before {cell(switch, 'before_error_pct')} %, "
        f"after {cell(switch, 'after_error_pct')} %; worst 10 s over "
        f"{cell(switch, 'worst_10s_over_pct')} %.",
        f"- Gateway CPU per call (both replicas, 2x split 50/50): exchange on "
        f"{cell('cpu exchange on', 'ms', 3)} ms, off {cell('cpu exchange off', 'ms', 3)} ms. "
        f"Without calls (the exchange's fixed cost, both replicas): "
        f"{cell('idle cpu exchange on', 'ms_per_s', 2)} ms of CPU per second on, "
        f"{cell('idle cpu exchange off', 'ms_per_s', 2)} off.",
    ]
    return lines
