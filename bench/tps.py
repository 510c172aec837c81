"""TPS enforcement: offered load at 0.5x, 1x, 2x and 5x the limit, one and two gateway replicas.

Real processes on loopback: one `kiu unit` and one or two `kiu gateway`
processes reading the same directory file. With two replicas the file says
`replicas: 2`, which is what a gateway derives from the ready endpoints of its
own Service in a cluster: each replica enforces half the limit, and the load
generator spreads calls evenly over both (as a balancer would).

Open loop, calls at fixed intervals (and one pattern of clumps: 0.9x the limit
sent as one burst at the start of every second, which the one-second bucket
must admit). Baselines measured in the same run: the rate the generator really
offered (its send times), and the same 2x load to a model without a limit,
which shows the unit and the generator deliver it, so what is refused at 2x is
refused by the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.gateway import processes
from tests.gateway.conftest import arn, directory, version, write

from bench import common, loadgen
from kiu.imaging import scenes

NAME = "tps"
MODEL = "shapes-classifier"
LIMIT = 20.0  # tps per unit x 1 unit
MULTIPLES = (0.5, 1.0, 2.0, 5.0)
THROTTLED = "ProvisionedThroughputExceededException"


@contextlib.contextmanager
def gateways(logs: Path, unit: processes.Unit, replicas: int) -> Iterator[list[processes.Gateway]]:
    path = logs / f"directory-{replicas}.yaml"
    content = directory(
        [version("metered", units=[], tps=LIMIT), version("open", units=[], tps=1_000_000.0)],
        replicas=replicas,
    )
    for entry in content["projectVersions"]:
        entry["units"] = [unit.entry()]
    write(path, content)
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(processes.gateway(path, logs)) for _ in range(replicas)]


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
        if replicas == 2:
            # Not a target: a balancer that sends 80 % of calls to one replica. Each
            # replica admits at most its half, so the sum falls short of the limit.
            common.log("tps: 2 replicas, 2x the limit split 80/20")
            skewed = loadgen.RoundRobin([clients[0]] * 4 + [clients[1]])
            await asyncio.sleep(1.5)
            samples, window = await loadgen.open_loop(skewed, rate=2 * LIMIT, seconds=seconds)
            out["loads"]["2x-split-80/20"] = measure_load(
                samples, window, offered=2 * LIMIT, limit=LIMIT, burst=burst
            )
            # Expected with a skewed split: 0.8 x 2L = 1.6L offered to a replica admitting
            # L/2, 0.4L to one admitting L/2: min(each offered, L/2) summed = 0.9 L.
            out["loads"]["2x-split-80/20"]["expected_steady_rate_per_s"] = 0.9 * LIMIT
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


def run(*, quick: bool = False) -> dict[str, Any]:
    started = common.machine()
    seconds = 4.0 if quick else 8.0
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
    one, two = figures["1"], figures["2"]
    targets = {
        "admitted_rate_error_pct_1_replica": common.target(
            abs(one["worst_steady_error_over_limit_pct"]),
            at_most=5.0,
            text="within 5 % of the limit (worst of 2x and 5x, steady rate after the burst)",
        ),
        "admitted_rate_error_pct_2_replicas": common.target(
            abs(two["worst_steady_error_over_limit_pct"]),
            at_most=10.0,
            text="within 10 % of the limit (worst of 2x and 5x)",
        ),
        "wrongly_throttled_pct_1_replica": common.target(
            one["wrongly_throttled_pct"], at_most=0.5, text="< 0.5 % of calls within the limit"
        ),
        "wrongly_throttled_pct_2_replicas": common.target(
            two["wrongly_throttled_pct"], at_most=0.5, text="< 0.5 % of calls within the limit"
        ),
    }
    result = {
        "name": NAME,
        "machine": started,
        "settings": {
            "limit_tps": LIMIT,
            "multiples": list(MULTIPLES),
            "seconds_per_load": seconds,
            "burst_seconds": 1.0,
            "model": MODEL,
            "split": "round robin over the replicas (even)",
            "quick": quick,
        },
        "figures": figures,
        "targets": targets,
    }
    plot(result)
    return result


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
        f"Two replicas: `replicas: 2` in the directory file (each enforces half), calls "
        f"spread round robin. Steady = admitted after the first second (the bucket starts "
        f"full with one second of the limit) divided by the time left; expected = "
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
    skewed = result["figures"].get("2", {}).get("loads", {}).get("2x-split-80/20")
    if skewed is not None:
        lines += [
            "",
            f"The `2x-split-80/20` row is not a target: a balancer that sends 80 % of the calls "
            f"to one of two replicas gets {common.fmt(skewed['steady_rate_per_s'])}/s admitted "
            f"(expected {skewed['expected_steady_rate_per_s']:g}/s = each replica's half, "
            f"capped by what it is offered): a replica never admits more than its share.",
        ]
    lines += [""]
    for replicas, data in result["figures"].items():
        lines.append(
            f"- {replicas} replica(s): {data['within_limit_throttled']} of "
            f"{data['within_limit_calls']} calls within the limit (0.5x, 1x, 0.9x clumped) "
            f"throttled = {common.fmt(data['wrongly_throttled_pct'], 3)} %; worst steady "
            f"error over the limit {common.fmt(data['worst_steady_error_over_limit_pct'])} %."
        )
    return "\n".join(lines)
