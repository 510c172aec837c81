"""End-to-end autoscaling on the local cluster, through the chart-installed gateway.

`helm install charts/kiu` into a fresh namespace of the local cluster (started
with hack/cluster.sh, or reused), one ProjectVersion on the cpu runtime (5 TPS
per unit, 1 to 4 units), then an open-loop load of signed DetectCustomLabels
calls through the chart's gateway replicas (round robin over their pod
addresses): below one unit's TPS, a step to three units' worth, and back.
The ProjectVersion's status is polled twice a second throughout.

Measured: time from the step to the first change of `desiredInferenceUnits`
and of `inServiceInferenceUnits`, to the full count in service, the throttled
fraction during the ramp, and the same on the way down. Baseline computed in
the same run: `kiu.policy.scaling` replayed over the load that was really sent,
with the operator's evaluation period and the unit start-up delay measured in
this run, which says what the decision core alone would have done.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tests.cluster.fixtures import REPO, Cluster, start_cluster, stop_cluster, wait_for

from bench import autoscaler, common, loadgen
from kiu.controller.config import Config
from kiu.imaging import scenes
from kiu.policy import scaling

NAME = "e2e_autoscaling"
NOT_RUN = (
    "It needs the local cluster (`make tools`; it reuses a running `make cluster-up` "
    "or starts one) and the chart (charts/kiu)."
)
GROUP, VERSION, PLURAL = "kiu.dev", "v1alpha1", "projectversions"
RELEASE = "kiu"
PV = "bench"
KEY_ID = "AKIAKIUBENCHE2E00001"
TPS = 5.0
MIN_UNITS, MAX_UNITS = 1, 4
EVALUATION_PERIOD = Config().evaluation_period  # the chart's default (operator.evaluationPeriod)
SCALE_DOWN_DELAY = 30  # shortened from 300 s so the run fits the benchmark budget
# (name, seconds, calls per second): below one unit's TPS, three units' worth, back.
PHASES = (("low", 20.0, 3.0), ("high", 60.0, 15.0), ("low again", 45.0, 3.0))


def values(namespace: str) -> dict[str, Any]:
    return {
        "operator": {
            "cpuModelRepository": str(REPO / "triton-models"),
            "watchNamespaces": [namespace],
            "evaluationPeriod": EVALUATION_PERIOD,
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        },
        "gateway": {
            "watchNamespaces": [namespace],
            "shutdownDelay": 0,
            "shutdownTimeout": 5,
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
            # plain HTTP, explicitly: the load is sent to pod addresses (no cluster DNS)
            "tls": {"enabled": False},
        },
        "accessKeys": {
            "create": True,
            "keys": [{"name": "bench", "accessKeyId": KEY_ID, "namespaces": ["*"]}],
        },
        "networkPolicy": {"unitNamespaces": [namespace]},
    }


class Poller:
    """Polls the ProjectVersion's status in a thread: (t, desired, in service, limit, demand)."""

    def __init__(self, cluster: Cluster, namespace: str, start: float) -> None:
        self._api = cluster.new_api_client()
        self._namespace = namespace
        self._start = start
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._api.close()

    def _run(self) -> None:
        from kubernetes import client

        custom = client.CustomObjectsApi(self._api)
        while not self._stop.is_set():
            t = time.perf_counter() - self._start
            try:
                obj = custom.get_namespaced_custom_object(
                    GROUP, VERSION, self._namespace, PLURAL, PV
                )
                status = obj.get("status") or {}
                self.rows.append(
                    {
                        "t": round(t, 2),
                        "desired": status.get("desiredInferenceUnits"),
                        "in_service": status.get("inServiceInferenceUnits"),
                        "tps_limit": status.get("tpsLimit"),
                        "demand_tps": status.get("demandTps"),
                    }
                )
            except Exception as exc:  # an API hiccup is a gap in the series, not a failure
                common.log(f"e2e: status poll failed: {type(exc).__name__}")
            self._stop.wait(0.5)


def schedule() -> list[float]:
    times, start = [], 0.0
    for _, seconds, rate in PHASES:
        count = int(seconds * rate)
        times += [start + i / rate for i in range(count)]
        start += seconds
    return times


def first(rows: list[dict[str, Any]], after: float, test: Any) -> float | None:
    for row in rows:
        if row["t"] >= after and row["desired"] is not None and test(row):
            return round(row["t"] - after, 2)
    return None


def analyse(samples: list[loadgen.Sample], rows: list[dict[str, Any]]) -> dict[str, Any]:
    step_up = PHASES[0][1]
    step_down = PHASES[0][1] + PHASES[1][1]
    end = step_down + PHASES[2][1]
    before = next((r for r in reversed(rows) if r["t"] < step_up and r["desired"]), None)
    base = before["desired"] if before else MIN_UNITS
    high = [r for r in rows if step_up <= r["t"] < step_down and r["desired"] is not None]
    peak = max((r["desired"] for r in high), default=base)
    out: dict[str, Any] = {"desired_before_step": base, "peak_desired": peak}
    out["up_desired_change_s"] = first(rows, step_up, lambda r: r["desired"] > base)
    out["up_in_service_change_s"] = first(rows, step_up, lambda r: (r["in_service"] or 0) > base)
    out["up_full_in_service_s"] = first(rows, step_up, lambda r: (r["in_service"] or 0) >= peak)
    high_rate = PHASES[1][2]
    out["up_capacity_covers_demand_s"] = first(
        rows, step_up, lambda r: (r["tps_limit"] or 0) >= high_rate
    )
    ramp_end = step_up + (out["up_full_in_service_s"] or PHASES[1][1])
    ramp = [s for s in samples if step_up <= s.sent < ramp_end]
    high_calls = [s for s in samples if step_up <= s.sent < step_down]
    out["ramp_s"] = round(ramp_end - step_up, 2)
    out["throttled_during_ramp_pct"] = _pct(ramp)
    out["throttled_high_phase_pct"] = _pct(high_calls)
    out["throttled_all_pct"] = _pct(samples)
    out["errors"] = sum(s.outcome not in ("ok", THROTTLED) for s in samples)
    low_before = [s for s in samples if s.sent < step_up]
    out["throttled_before_step_pct"] = _pct(low_before)
    after = [r for r in rows if r["t"] >= step_down and r["desired"] is not None]
    top = max((r["desired"] for r in after[:4]), default=peak)
    out["down_desired_change_s"] = first(rows, step_down, lambda r: r["desired"] < top)
    out["down_in_service_change_s"] = first(
        rows, step_down, lambda r: r["in_service"] is not None and r["in_service"] < top
    )
    final = [r for r in rows if r["t"] <= end and r["desired"] is not None]
    out["desired_at_end"] = final[-1]["desired"] if final else None
    up, in_service = out["up_desired_change_s"], out["up_in_service_change_s"]
    out["unit_start_s"] = (
        round(in_service - up, 2) if up is not None and in_service is not None else None
    )
    return out


THROTTLED = "ProvisionedThroughputExceededException"


def _pct(samples: list[loadgen.Sample]) -> float | None:
    if not samples:
        return None
    return round(100 * sum(s.outcome == THROTTLED for s in samples) / len(samples), 2)


def replay(samples: list[loadgen.Sample], startup: float | None) -> dict[str, Any]:
    """`kiu.policy.scaling` over the calls really sent, one-second resolution."""
    import numpy as np

    seconds = int(sum(p[1] for p in PHASES))
    offered = np.zeros(seconds)
    for s in samples:
        if 0 <= s.sent < seconds:
            offered[int(s.sent)] += 1
    trace = autoscaler.Trace("e2e", "the load sent", offered.copy(), offered)
    policy = scaling.Policy(
        tps_per_unit=TPS,
        min_units=MIN_UNITS,
        max_units=MAX_UNITS,
        scale_down_delay_seconds=SCALE_DOWN_DELAY,
    )
    scaler = autoscaler.Kiu("kiu", int(EVALUATION_PERIOD), policy=policy)
    delay = max(1, round(startup)) if startup is not None else autoscaler.STARTUP
    # The run starts as the cluster did: the minimum in service, nothing in the history.
    run = autoscaler.simulate(trace, scaler, startup=delay, initial=MIN_UNITS)
    step_up = int(PHASES[0][1])
    step_down = int(PHASES[0][1] + PHASES[1][1])
    ups = [d for d in run.decisions if d[0] >= step_up and d[2] > d[1]]
    downs = [d for d in run.decisions if d[0] >= step_down and d[2] < d[1]]
    assert run.throttled_per_second is not None
    high = slice(step_up, step_down)
    return {
        "startup_s": delay,
        "up_desired_change_s": ups[0][0] - step_up if ups else None,
        "peak_desired": max((d[2] for d in run.decisions), default=MIN_UNITS),
        "down_desired_change_s": downs[0][0] - step_down if downs else None,
        "throttled_high_phase_pct": round(
            100 * float(run.throttled_per_second[high].sum()) / max(float(offered[high].sum()), 1),
            2,
        ),
    }


def run(*, quick: bool = False) -> dict[str, Any] | None:
    started = common.machine()
    cluster, we_started = start_cluster()
    namespace = f"kiu-bench-e2e-{uuid.uuid4().hex[:5]}"
    try:
        return _run(cluster, namespace, started, quick=quick, we_started=we_started)
    finally:
        common.log("e2e: cleaning up")
        cluster.helm("uninstall", RELEASE, "--namespace", namespace, "--wait", check=False)
        cluster.delete_namespace(namespace)
        stop_cluster(cluster)
        if we_started:
            common.log("e2e: the cluster this run started is stopped")


def _run(
    cluster: Cluster, namespace: str, started: dict[str, Any], *, quick: bool, we_started: bool
) -> Any:
    common.log(f"e2e: installing the chart into {namespace}")
    cluster.create_namespace(namespace)
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    with tempfile.TemporaryDirectory(prefix="kiu-bench-e2e-") as tmp:
        path = Path(tmp) / "values.json"
        path.write_text(json.dumps(values(namespace)))
        t0 = time.monotonic()
        cluster.helm(
            "install", RELEASE, str(REPO / "charts" / "kiu"), "--namespace", namespace,
            "--values", str(path), "--wait", "--timeout=300s", timeout=360,
        )  # fmt: skip
        install_s = time.monotonic() - t0
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/projectversions.kiu.dev", "--timeout=60s"
    )
    cluster.apply(
        common.classifier(
            PV,
            min_units=MIN_UNITS,
            max_units=MAX_UNITS,
            tps=TPS,
            autoscaling={"scaleDownDelaySeconds": SCALE_DOWN_DELAY},
        ),
        namespace,
    )
    t0 = time.monotonic()

    def status() -> dict[str, Any]:
        obj = cluster.custom().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, PV)
        return dict(obj.get("status") or {})

    wait_for(
        lambda: status().get("status") == "RUNNING" and status().get("inServiceInferenceUnits"),
        timeout=300,
        what="the ProjectVersion RUNNING with a unit in service",
        interval=0.5,
    )
    first_unit_s = time.monotonic() - t0
    arn = status()["arn"]
    secret = cluster.core().read_namespaced_secret(f"{RELEASE}-access-key-bench", namespace)
    key = (KEY_ID, base64.b64decode(secret.data["secretAccessKey"]).decode())
    addresses = wait_for(
        lambda: _gateways(cluster, namespace), timeout=60, what="ready gateway endpoints"
    )
    image = next(scenes.scenes("classification", seed=8, count=1)).image
    common.log(f"e2e: load through {len(addresses)} gateway replica(s) for "
               f"{sum(p[1] for p in PHASES):.0f} s")  # fmt: skip

    async def drive(start: float) -> list[loadgen.Sample]:
        clients = [loadgen.AwsJson(a, arn, image, concurrency=64, key=key) for a in addresses]
        try:
            samples, _ = await loadgen.scheduled(
                loadgen.RoundRobin(list(clients)), schedule(), call_timeout=30.0, start=start
            )
            return samples
        finally:
            for client in clients:
                await client.close()

    runs: list[dict[str, Any]] = []
    repetitions = 1 if quick else common.REPETITIONS
    for n in range(repetitions):
        if n:  # each repetition starts as the first did: the minimum in service, at rest
            common.log(f"e2e: waiting for {MIN_UNITS} unit(s) in service before repetition {n + 1}")
            wait_for(
                lambda: _at(status(), MIN_UNITS),
                timeout=300,
                what=f"the ProjectVersion back at {MIN_UNITS} unit(s)",
                interval=0.5,
            )
        common.log(f"e2e: repetition {n + 1} of {repetitions}")
        start = time.perf_counter()
        with Poller(cluster, namespace, start) as poller:
            samples = asyncio.run(drive(start))
            time.sleep(2)
        measured = analyse(samples, poller.rows)
        runs.append(
            {
                "calls": len(samples),
                "measured": measured,
                "replay": replay(samples, measured["unit_start_s"]),
                "status": poller.rows,
                "per_second": _per_second(samples, int(sum(p[1] for p in PHASES))),
            }
        )
    result = {
        "name": NAME,
        "machine": started,
        "settings": {
            "tps_per_unit": TPS,
            "min_units": MIN_UNITS,
            "max_units": MAX_UNITS,
            "evaluation_period_s": EVALUATION_PERIOD,
            "scale_down_delay_s": SCALE_DOWN_DELAY,
            "phases": [{"name": n, "seconds": s, "rate": r} for n, s, r in PHASES],
            "gateway_replicas": len(addresses),
            "client": "open loop, AWS JSON signed by botocore's signer, round robin over "
            "the gateway pods, no retries",
            "cluster": f"local cluster {os.environ.get('KIU_CLUSTER_ID') or '(default)'}"
            f"{' started by this run' if we_started else ', already running'}",
            "quick": quick,
        },
        "figures": {
            "install_s": round(install_s, 1),
            "first_unit_running_s": round(first_unit_s, 1),
            "repetitions": len(runs),
            "calls": sum(r["calls"] for r in runs),
            "measured": _spreads([r["measured"] for r in runs]),
            "replay": _spreads([r["replay"] for r in runs]),
            "runs": [{k: r[k] for k in ("calls", "measured", "replay")} for r in runs],
        },
        # The plot shows the first repetition; the others are in "runs" by their figures.
        "series": {"status": runs[0]["status"], "per_second": runs[0]["per_second"]},
        "targets": {
            "first_scale_up_decision_s": common.target(
                common.spread(r["measured"]["up_desired_change_s"] for r in runs),
                at_most=autoscaler.FIRST_DECISION_S,
                text=f"<= {autoscaler.FIRST_DECISION_S} s after the step (one step per "
                f"repetition, its phase against the {EVALUATION_PERIOD:g} s evaluations not "
                "controlled; status polled every 0.5 s)",
            ),
            "throttled_high_phase_above_replay_pct": common.target(
                common.spread(
                    round(
                        r["measured"]["throttled_high_phase_pct"]
                        - r["replay"]["throttled_high_phase_pct"],
                        2,
                    )
                    for r in runs
                ),
                at_most=0.0,
                text="throttled over the high phase no more than the policy's replay of the "
                "same calls predicts (value: measured less replay, points)",
            ),
        },
    }
    plot(result)
    return result


def _at(status: dict[str, Any], units: int) -> bool:
    """Whether a ProjectVersion's status has ``units`` desired and in service."""
    return status.get("desiredInferenceUnits") == status.get("inServiceInferenceUnits") == units


def _spreads(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure of the repetitions as its median, min and max."""
    return {key: common.spread(r[key] for r in runs) for key in runs[0]}


def _gateways(cluster: Cluster, namespace: str) -> list[str]:
    slices = cluster.discovery().list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={RELEASE}-gateway"
    )
    return sorted(
        f"http://{e.addresses[0]}:8080"
        for piece in slices.items
        for e in piece.endpoints or []
        if e.conditions and e.conditions.ready
    )


def _per_second(samples: list[loadgen.Sample], seconds: int) -> dict[str, list[int]]:
    sent, ok, throttled = [0] * seconds, [0] * seconds, [0] * seconds
    for s in samples:
        i = int(s.sent)
        if 0 <= i < seconds:
            sent[i] += 1
            ok[i] += s.outcome == "ok"
            throttled[i] += s.outcome == THROTTLED
    return {"sent": sent, "ok": ok, "throttled": throttled}


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["series"]["status"]
    per = result["series"]["per_second"]
    fig, (load, units) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    x = list(range(len(per["sent"])))
    load.plot(x, per["sent"], lw=1, color="black", label="demand (calls sent per second)")
    load.plot(x, per["ok"], lw=1, color="tab:green", label="admitted per second")
    load.fill_between(x, per["throttled"], color="tab:red", alpha=0.3, lw=0,
                      label="throttled per second")  # fmt: skip
    t = [r["t"] for r in rows]
    load.step(t, [r["tps_limit"] for r in rows], where="post", color="tab:blue", lw=2,
              label="TPS limit (status.tpsLimit)")  # fmt: skip
    load.plot(t, [r["demand_tps"] for r in rows], color="tab:purple", lw=1, ls="--",
              label="demand seen by the operator (status.demandTps)")  # fmt: skip
    load.set_ylabel("calls per second")
    load.legend(fontsize=7, loc="upper right")
    units.step(t, [r["desired"] for r in rows], where="post", lw=2, label="desired units")
    units.step(t, [r["in_service"] for r in rows], where="post", lw=2, ls="--",
               label="in-service units")  # fmt: skip
    units.set_ylabel("units")
    units.set_xlabel("seconds since the load started")
    units.legend(fontsize=7, loc="upper right")
    start = 0.0
    for _, seconds, _rate in PHASES:
        for ax in (load, units):
            ax.axvline(start, color="gray", lw=0.5, ls=":")
        start += seconds
    fig.tight_layout()
    fig.savefig(common.png(NAME), dpi=90)
    plt.close(fig)


def summary(result: dict[str, Any]) -> str:
    f = result["figures"]
    m, b = f["measured"], f["replay"]
    st = result["settings"]
    phases = ", ".join(f"{p['seconds']:g} s at {p['rate']:g}/s" for p in st["phases"])
    lines = [
        f"Chart installed in {f['install_s']:.0f} s; the ProjectVersion ({st['tps_per_unit']:g} "
        f"TPS per unit, {st['min_units']} to {st['max_units']} units, scale-down delay "
        f"{st['scale_down_delay_s']} s instead of 300 to fit the run) had its first unit in "
        f"service {f['first_unit_running_s']:.0f} s after it was applied. Load: {phases}, "
        f"through {st['gateway_replicas']} gateway replica(s); {f['calls']} calls in "
        f"{f.get('repetitions', 1)} repetition(s) (median [min, max] shown; the plot shows "
        f"the first). Baseline: "
        f"`kiu.policy.scaling` replayed over the calls really sent, evaluated every "
        f"{st['evaluation_period_s']:g} s, with the unit start-up measured here "
        f"({common.show(b['startup_s'], 0)} s).",
        "",
        "| figure | measured | replay of the policy |",
        "|---|---|---|",
        f"| step up: to the first change of desired units (s) | "
        f"{common.show(m['up_desired_change_s'], 1)} "
        f"| {common.show(b['up_desired_change_s'], 0)} |",
        f"| step up: to the first change of in-service units (s) | "
        f"{common.show(m['up_in_service_change_s'], 1)} | - |",
        f"| step up: to {common.show(m['peak_desired'], 0)} units in service (s) | "
        f"{common.show(m['up_full_in_service_s'], 1)} | - |",
        f"| step up: to a TPS limit covering the new demand (s) | "
        f"{common.show(m['up_capacity_covers_demand_s'], 1)} | - |",
        f"| peak desired units | {common.show(m['peak_desired'], 0)} "
        f"| {common.show(b['peak_desired'], 0)} |",
        f"| throttled during the ramp (step to full count) % | "
        f"{common.show(m['throttled_during_ramp_pct'])} | - |",
        f"| throttled over the high phase % | {common.show(m['throttled_high_phase_pct'])} "
        f"| {common.show(b['throttled_high_phase_pct'])} |",
        f"| throttled before the step (below one unit) % | "
        f"{common.show(m['throttled_before_step_pct'])} | - |",
        f"| step down: to the first change of desired units (s) | "
        f"{common.show(m['down_desired_change_s'], 1)} "
        f"| {common.show(b['down_desired_change_s'], 0)} |",
        f"| step down: to the first change of in-service units (s) | "
        f"{common.show(m['down_in_service_change_s'], 1)} | - |",
        f"| calls failed other than throttled | {common.show(m['errors'], 0)} | - |",
    ]
    per = result["series"]["per_second"]
    step = int(st["phases"][0]["seconds"])
    early = [(i, n) for i, n in enumerate(per["throttled"][:step]) if n]
    if early:
        lines.append(
            f"| throttled before the step, by second: "
            f"{', '.join(f'{n} in second {i}' for i, n in early)} | | |"
        )
    lines += [
        "",
        f"A unit here starts in {common.show(m['unit_start_s'], 0)} s (pods are local "
        f"processes: no node to provision, no image to pull); the replay of section 3 "
        f"assumes 60 s. What is throttled during a step is about (start-up + time to the "
        f"decision) x the demand above the units in service.",
    ]
    return "\n".join(lines)
