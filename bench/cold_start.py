"""Cold start from zero units on the local cluster, through the chart-installed gateway.

`helm install charts/kiu` into a fresh namespace of the local cluster (started
with hack/cluster.sh, or reused), one ProjectVersion on the cpu runtime with
min 0, max 1 and a short `scaleToZeroAfterSeconds`. Each repetition waits for
the model to be idle at zero (no unit pod left), sends one signed
DetectCustomLabels call, and measures from its arrival: the activation
annotation the gateway writes, the first unit pod Ready (its condition's
transition time, to the second), and the answer. Then,
with the unit up, warm calls of the same image give the same-run baseline.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime
from typing import Any

from tests.chart import chart
from tests.cluster.fixtures import Cluster, start_cluster, stop_cluster, wait_for

from bench import common
from kiu.imaging import scenes

NAME = "cold_start"
NOT_RUN = (
    "It needs the local cluster (`make tools`; it reuses a running `make cluster-up` "
    "or starts one) and the chart (charts/kiu)."
)
PV = "cold"
IDLE_SECONDS = 5
REPETITIONS = 3
WARM_CALLS = 5
ACTIVATION = "kiu.dev/activation-requested-at"


def run(*, quick: bool = False) -> dict[str, Any] | None:
    started = common.machine()
    cluster, we_started = start_cluster()
    namespace = f"kiu-bench-cold-{uuid.uuid4().hex[:5]}"
    try:
        cluster.create_namespace(namespace)
        common.log(f"cold start: installing the chart into {namespace}")
        with chart.installed(cluster, namespace) as release:
            return _run(release, started, quick=quick, we_started=we_started)
    finally:
        cluster.delete_namespace(namespace)
        stop_cluster(cluster)


def _pods(cluster: Cluster, namespace: str) -> list[Any]:
    items = (
        cluster.core()
        .list_namespaced_pod(namespace, label_selector=f"kiu.dev/projectversion={PV}")
        .items
    )
    return list(items)


def _ready_since(pod: Any) -> float | None:
    """When the pod turned Ready (its condition's lastTransitionTime: whole seconds)."""
    for c in pod.status.conditions or []:
        if c.type == "Ready" and c.status == "True" and c.last_transition_time:
            return float(c.last_transition_time.timestamp())
    return None


def _at_zero(release: chart.Release) -> None:
    def zero() -> bool:
        s = release.status(PV)
        return (
            s.get("status") == "RUNNING"
            and s.get("desiredInferenceUnits") == 0
            and s.get("inServiceInferenceUnits") == 0
            and not _pods(release.cluster, release.namespace)
        )

    wait_for(zero, timeout=180, interval=0.5, what=f"{PV} idle at zero")


def _cold(release: chart.Release, client: Any, arn: str, image: bytes) -> dict[str, float]:
    """One call to the model at zero: seconds from its arrival to each milestone."""
    cluster, namespace = release.cluster, release.namespace
    wall, t0 = time.time(), time.monotonic()
    answer = client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image})
    answered = time.monotonic() - t0
    assert answer["CustomLabels"], answer
    metadata = cluster.custom().get_namespaced_custom_object(
        chart.GROUP, chart.VERSION, namespace, chart.PLURAL, PV
    )["metadata"]
    raw = metadata["annotations"][ACTIVATION]
    activated = datetime.strptime(raw, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() - wall
    ready = wait_for(
        lambda: min((t for p in _pods(cluster, namespace) if (t := _ready_since(p))), default=None),
        timeout=30,
        what="the unit's Ready condition",
    )
    return {
        "activation_written_s": round(activated, 3),
        "first_unit_ready_s": round(ready - wall, 2),
        "first_response_s": round(answered, 3),
    }


def _run(
    release: chart.Release, started: dict[str, Any], *, quick: bool, we_started: bool
) -> dict[str, Any]:
    cluster, namespace = release.cluster, release.namespace
    cluster.apply(
        common.classifier(
            PV,
            min_units=0,
            max_units=1,
            tps=5,
            autoscaling={"scaleToZeroAfterSeconds": IDLE_SECONDS},
        ),
        namespace,
    )
    arn = wait_for(
        lambda: release.status(PV).get("arn"), timeout=120, what="the ProjectVersion's ARN"
    )
    client = release.rekognition(attempts=1)
    image = next(scenes.scenes("classification", seed=8, count=1)).image
    repetitions = 1 if quick else REPETITIONS
    runs: list[dict[str, Any]] = []
    for n in range(repetitions):
        _at_zero(release)
        cold = _cold(release, client, arn, image)
        warm = []
        for _ in range(WARM_CALLS):
            t0 = time.monotonic()
            client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image})
            warm.append(round(time.monotonic() - t0, 4))
            time.sleep(0.5)  # within one replica's share (5 TPS over 2 replicas)
        runs.append({**cold, "warm_s": warm})
        common.log(
            f"cold start {n + 1}/{repetitions}: unit ready {cold['first_unit_ready_s']} s, "
            f"answer {cold['first_response_s']} s; warm median {statistics.median(warm)} s"
        )
    warm_all = [w for r in runs for w in r["warm_s"]]
    firsts = common.spread((r["first_response_s"] for r in runs), digits=3)
    figures = {
        "repetitions": repetitions,
        "first_response_s": firsts,
        "first_unit_ready_s": common.spread(r["first_unit_ready_s"] for r in runs),
        "activation_written_s": common.spread(r["activation_written_s"] for r in runs),
        "warm_s": common.spread((statistics.median(r["warm_s"]) for r in runs), digits=4),
        "warm_median_s": round(statistics.median(warm_all), 4),
        "cold_over_warm": common.spread(
            (r["first_response_s"] / statistics.median(r["warm_s"]) for r in runs), digits=1
        ),
    }
    result = {
        "name": NAME,
        "machine": started,
        "settings": {
            "runtime": "cpu",
            "model": "shapes-classifier",
            "scale_to_zero_after_s": IDLE_SECONDS,
            "warm_calls_per_repetition": WARM_CALLS,
            "client": "boto3, one attempt, one gateway replica",
            "unit_ready": "lastTransitionTime of the first unit pod's Ready condition "
            "(whole seconds: up to 1 s early)",
            "cluster": "local cluster" + (" started by this run" if we_started else ", reused"),
            "quick": quick,
        },
        "figures": figures,
        "runs": runs,
        "targets": {},
    }
    plot(result)
    return result


def summary(result: dict[str, Any]) -> str:
    f = result["figures"]
    rows = "\n".join(
        f"| {i + 1} | {r['activation_written_s']:.3f} | {r['first_unit_ready_s']:.1f} "
        f"| {r['first_response_s']:.2f} | {statistics.median(r['warm_s']) * 1000:.0f} |"
        for i, r in enumerate(result["runs"])
    )
    return (
        "A call to a model idle at zero units is held by the gateway, which annotates the "
        "ProjectVersion at once; the operator starts a unit and the held call is sent when "
        "the unit is in the gateway's routing table.\n\n"
        "| run | activation written (s) | first unit Ready (s) | first response (s) "
        "| warm call, median (ms) |\n|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"First response {_show(f, 'first_response_s', 2)} s from the call's arrival "
        f"(first unit Ready at {_show(f, 'first_unit_ready_s', 1)} s), against a warm call "
        f"of {f['warm_median_s'] * 1000:.0f} ms in the same run: "
        f"{_show(f, 'cold_over_warm', 0)} times as long (medians [min, max] over "
        f"{f.get('repetitions', len(result['runs']))} repetitions). "
        "Most of the cold start is the unit's own start (process, model load, readiness "
        "probe); the activation signal takes milliseconds."
    )


def _show(figures: dict[str, Any], name: str, digits: int) -> str:
    """A figure with its spread (results written before spreads hold the median only)."""
    if name in figures:
        return common.show(figures[name], digits)
    return common.fmt(figures[name.replace("_s", "_median_s")], digits)


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    y = list(range(len(runs)))
    ax.barh(y, [r["first_response_s"] for r in runs], color="tab:orange",
            label="call arrival -> first response")  # fmt: skip
    ax.barh(y, [r["first_unit_ready_s"] for r in runs], color="tab:blue",
            label="call arrival -> first unit Ready")  # fmt: skip
    ax.barh(y, [r["activation_written_s"] for r in runs], color="black",
            label="activation annotation written")  # fmt: skip
    warm = statistics.median(w for r in runs for w in r["warm_s"])
    ax.axvline(warm, color="tab:green", ls="--", label=f"warm call (median {warm * 1000:.0f} ms)")
    ax.set_yticks(y, [f"run {i + 1}" for i in y])
    ax.set_xlabel("seconds")
    ax.set_title("Cold start from zero units (cpu runtime, local cluster)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(common.png(NAME), dpi=110)
    plt.close(fig)
