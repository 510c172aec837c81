"""TPS enforcement measured: an offered load of twice the limit, one and two replicas.

The bucket starts full (one second of the limit) and then admits at the limit,
so over T seconds a replica admits about ``limit x T + limit``. The figures each
run measures are printed (``pytest -s``) and kept in docs/gateway.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kiu.imaging import scenes

from . import load, processes
from .conftest import arn, directory, version, write

LIMIT = 10.0  # tps per unit x 1 unit
SECONDS = 10.0
THROTTLED = "ProvisionedThroughputExceededException"


@pytest.fixture(scope="module")
def budget_directory(
    real_units: dict[str, list[processes.Unit]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    logs = tmp_path_factory.mktemp("budget")
    unit = real_units["classifier"][0]
    single = logs / "single.yaml"
    content = directory([version("metered", units=[], tps=LIMIT)])
    content["projectVersions"][0]["units"] = [unit.entry()]
    write(single, content)
    shared = logs / "shared.yaml"
    write(shared, {**content, "replicas": 2})
    return single, shared


def admitted_rate(results: list[load.Result]) -> tuple[int, float, float]:
    """Admitted calls in all, the admission rate after the first second's burst, and
    the window the calls were actually sent over (a busy client sends late)."""
    admitted = [r for r in results if r.error == ""]
    window = results[-1].sent - results[0].sent
    steady = [r for r in admitted if r.sent >= 1.0]
    return len(admitted), len(steady) / (window - 1.0), window


async def test_one_replica_admits_the_limit_under_twice_the_load(
    budget_directory: tuple[Path, Path], tmp_path: Path
) -> None:
    image = next(scenes.scenes("classification", seed=8, count=1)).image
    with processes.gateway(budget_directory[0], tmp_path) as gw:
        results = await load.offer(
            [(gw.url, 2 * LIMIT)], arn=arn("metered"), image=image, seconds=SECONDS
        )
        server = processes.metrics(gw)
    counts = load.tally(results)
    assert set(counts) <= {"ok", THROTTLED}, counts
    total, steady, window = admitted_rate(results)
    expected = LIMIT * window + LIMIT  # the limit over the run, plus the initial burst
    throttled = sorted(r.latency for r in results if r.error == THROTTLED)
    key = (("operation", "DetectCustomLabels"), ("outcome", "throttled"))
    decided = (
        server["kiu_gateway_request_duration_seconds_sum", key]
        / server["kiu_gateway_request_duration_seconds_count", key]
    )
    print(
        f"\none replica, limit {LIMIT}/s, offered {2 * LIMIT}/s for {SECONDS:.0f}s: "
        f"admitted {total} (expected {expected:.0f}), steady {steady:.2f}/s; "
        f"throttled answers p50 {1000 * throttled[len(throttled) // 2]:.2f} ms, "
        f"p99 {1000 * throttled[int(len(throttled) * 0.99)]:.2f} ms at the client, "
        f"{1000 * decided:.3f} ms mean inside the gateway"
    )
    assert abs(total - expected) <= 0.05 * expected
    assert abs(steady - LIMIT) <= 0.1 * LIMIT
    assert decided < 0.005


@pytest.mark.parametrize(
    ("share_a", "share_b", "exchange"),
    [(0.5, 0.5, True), (0.8, 0.2, True), (1.0, 0.0, True), (0.8, 0.2, False)],
    ids=["even", "skewed", "one-sided", "skewed-without-exchange"],
)
async def test_two_replicas_share_the_limit(
    budget_directory: tuple[Path, Path],
    tmp_path: Path,
    share_a: float,
    share_b: float,
    exchange: bool,
) -> None:
    """With the exchange the replicas admit the limit together whatever the split;
    without it each admits its half (a skewed split under-admits)."""
    image = next(scenes.scenes("classification", seed=8, count=1)).image
    offered = 2 * LIMIT
    ports = [processes.free_port(), processes.free_port()]
    options = [
        ["--peer", f"{processes.HOST}:{ports[1 - i]}"] if exchange else ["--exchange-period", "0"]
        for i in range(2)
    ]
    with (
        processes.gateway(budget_directory[1], tmp_path, *options[0], internal_port=ports[0]) as a,
        processes.gateway(budget_directory[1], tmp_path, *options[1], internal_port=ports[1]) as b,
    ):
        targets = [(a.url, offered * share_a), (b.url, offered * share_b)]
        results = await load.offer(
            [t for t in targets if t[1] > 0], arn=arn("metered"), image=image, seconds=SECONDS
        )
    counts = load.tally(results)
    assert set(counts) <= {"ok", THROTTLED}, counts
    total, steady, window = admitted_rate(results)
    rates = [offered * share for share in (share_a, share_b)]
    if exchange:
        # Together the replicas admit the limit whatever the split: never under it by
        # more than 5 %, never over it by more than 5 % plus the one second of the limit
        # their buckets start with (half each; how much of it is spent depends on how the
        # shares move in the first exchange periods).
        low, high = 0.95 * LIMIT * window, 1.05 * LIMIT * window + LIMIT
    else:
        # Each replica admits min(its offered rate, limit / 2), plus its first bucket
        # (half the limit) if it is offered more than that.
        burst = sum(LIMIT / 2 for r in rates if r > LIMIT / 2)
        expected = sum(min(r, LIMIT / 2) * window for r in rates) + burst
        low, high = 0.95 * expected, 1.05 * expected
    print(
        f"\ntwo replicas, split {share_a:.0%}/{share_b:.0%} of {offered}/s, limit {LIMIT}/s, "
        f"exchange {'on' if exchange else 'off'}: admitted {total} (from {low:.0f} to "
        f"{high:.0f}), steady {steady:.2f}/s = {steady / LIMIT:.0%} of the limit"
    )
    assert low <= total <= high
    if not exchange:
        assert steady <= LIMIT * 1.05
