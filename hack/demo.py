"""`make demo`: kiu installed with its Helm chart, a model that scales under load.

On the local cluster (`hack/cluster.sh up` has run), this

1. installs charts/kiu into `kiu-system` (`helm upgrade --install`), with an access key,
2. applies the ProjectVersions of examples/ to the namespace `demo` and shortens the
   classifier's scale-down delay so the run fits in a few minutes,
3. drives a load on the classifier through the chart's gateway with boto3 (signed,
   no retries): calm, then above what one unit admits, then calm again,
4. prints, as it happens, desired and in-service units, demand, the TPS limit and
   throttled calls,
5. writes a PNG plot (and a CSV) of the run under .kiu/demo/ and prints what to try,
   leaving everything running.

Usage: .venv/bin/python hack/demo.py [--period SECONDS] [--no-load]
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("KIU_STATE_DIR", REPO / ".kiu"))
BIN = Path(os.environ.get("KIU_BIN_DIR", REPO / "hack" / ".cache" / "bin"))
KUBECONFIG = STATE / "kubeconfig"
OUT = STATE / "demo"
#: kubectl output of the ProjectVersion CRD's Established condition status.
ESTABLISHED = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'

RELEASE = "kiu"
SYSTEM = "kiu-system"
NAMESPACE = "demo"
MODEL = "shapes-classifier"
KEY_NAME = "demo"
KEY_ID = "AKIAKIUDEMO000000001"
SECRET = f"{RELEASE}-access-key-{KEY_NAME}"
GATEWAY_SERVICE = f"{RELEASE}-gateway"
#: boto3 clients, each with its own keep-alive connections, so that kube-proxy spreads
#: them over the gateway replicas as it would spread a user's clients.
CLIENTS = 8
SCALE_DOWN_DELAY = 40


# --- the load: a piecewise-linear rate over time -----------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    start_tps: float
    end_tps: float


#: Calm (one unit admits 5 TPS), a quick climb to almost three times that (calls are
#: throttled until units are added), a plateau, a drop back to calm, and enough calm for
#: the scale-down delay to pass.
PROFILE: tuple[Phase, ...] = (
    Phase("calm", 25, 2, 2),
    Phase("rising", 8, 2, 14),
    Phase("peak", 90, 14, 14),
    Phase("falling", 7, 14, 2),
    Phase("calm again", 100, 2, 2),
)


def duration(profile: Sequence[Phase] = PROFILE) -> float:
    return sum(p.seconds for p in profile)


def rate_at(t: float, profile: Sequence[Phase] = PROFILE) -> tuple[str, float]:
    """(phase name, calls per second) the load asks for `t` seconds into the run."""
    start = 0.0
    for phase in profile:
        if t < start + phase.seconds:
            share = (t - start) / phase.seconds
            return phase.name, phase.start_tps + share * (phase.end_tps - phase.start_tps)
        start += phase.seconds
    return "done", 0.0


def schedule(profile: Sequence[Phase] = PROFILE) -> Iterator[float]:
    """Send times (seconds from the start) of an open-loop load following `profile`:
    the integral of the rate, one call each time it passes a whole number."""
    step, t, owed = 0.01, 0.0, 0.0
    end = duration(profile)
    while t < end:
        owed += rate_at(t, profile)[1] * step
        while owed >= 1.0:
            owed -= 1.0
            yield t
        t += step


# --- what was measured ------------------------------------------------------------------


@dataclass
class Sample:
    """One row of the live table: the load of the last period and the model's status."""

    t: float
    phase: str
    offered: float
    admitted: float
    throttled: float
    errors: float
    p50_ms: float | None
    p95_ms: float | None
    desired: int | None
    in_service: int | None
    tps_limit: float | None
    demand: float | None
    status: str


@dataclass
class Counters:
    """Outcomes of calls since the last sample (thread-safe)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    admitted: int = 0
    throttled: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    last_error: str = ""

    def record(self, outcome: str, seconds: float, error: str = "") -> None:
        with self.lock:
            if outcome == "ok":
                self.admitted += 1
                self.latencies.append(seconds)
            elif outcome == "throttled":
                self.throttled += 1
            else:
                self.errors += 1
                self.last_error = error

    def take(self) -> tuple[int, int, int, int, list[float]]:
        with self.lock:
            taken = (self.sent, self.admitted, self.throttled, self.errors, self.latencies)
            self.sent = self.admitted = self.throttled = self.errors = 0
            self.latencies = []
            return taken


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


COLUMNS = (
    ("time", 6),
    ("phase", 11),
    ("offered/s", 9),
    ("ok/s", 6),
    ("throttled/s", 11),
    ("demand", 7),
    ("TPS limit", 9),
    ("desired", 7),
    ("in service", 10),
    ("p50 ms", 7),
    ("status", 8),
)


def header() -> str:
    return "  ".join(name.rjust(width) for name, width in COLUMNS)


def row(sample: Sample) -> str:
    def num(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    cells = (
        f"{sample.t:.0f}s",
        sample.phase,
        num(sample.offered),
        num(sample.admitted),
        num(sample.throttled),
        num(sample.demand),
        num(sample.tps_limit, 0),
        "-" if sample.desired is None else str(sample.desired),
        "-" if sample.in_service is None else str(sample.in_service),
        num(sample.p50_ms, 0),
        sample.status,
    )
    return "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))


# --- the plot ---------------------------------------------------------------------------


def plot(samples: Sequence[Sample], path: Path) -> Path:
    """A PNG of the run: units, load against the limit, latency."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    t = [s.t for s in samples]
    figure, (units, load, latency) = pyplot.subplots(
        3, 1, figsize=(11, 9), sharex=True, gridspec_kw={"height_ratios": [2, 3, 2]}
    )
    figure.suptitle(f"kiu demo: {MODEL} (cpu runtime, 5 TPS per unit, 1 to 4 units)")
    units.step(t, [s.desired for s in samples], where="post", label="desired units", lw=2)
    units.step(
        t, [s.in_service for s in samples], where="post", label="in-service units", lw=2, ls="--"
    )
    units.set_ylabel("units")
    units.set_ylim(0, 5.5)
    start = 0.0
    for phase in PROFILE:
        units.text(start + phase.seconds / 2, 5.1, phase.name, ha="center", fontsize="small")
        start += phase.seconds
    units.legend(loc="upper right")
    units.grid(alpha=0.3)

    load.plot(t, [s.offered for s in samples], label="offered (calls/s sent)", lw=1.5)
    load.plot(t, [s.demand for s in samples], label="demand seen by the operator", lw=1.5)
    load.step(t, [s.tps_limit for s in samples], where="post", label="TPS limit", lw=2, c="k")
    load.plot(t, [s.admitted for s in samples], label="admitted/s", lw=1, alpha=0.8)
    throttled = [s.throttled for s in samples]
    load.fill_between(t, throttled, alpha=0.3, color="tab:red", lw=0)
    load.plot(t, throttled, color="tab:red", lw=1.5, label="throttled/s")
    load.set_ylabel("calls per second")
    load.legend(loc="upper right", fontsize="small")
    load.grid(alpha=0.3)

    latency.plot(t, [s.p50_ms for s in samples], label="p50", lw=1.5)
    latency.plot(t, [s.p95_ms for s in samples], label="p95", lw=1, alpha=0.8)
    latency.set_ylabel("latency of admitted calls (ms)")
    latency.set_xlabel("seconds since the load started")
    latency.legend(loc="upper right")
    latency.grid(alpha=0.3)
    for axis in (units, load, latency):
        _shade_phases(axis)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def _shade_phases(axis: Any) -> None:
    start = 0.0
    for index, phase in enumerate(PROFILE):
        if index % 2:
            axis.axvspan(start, start + phase.seconds, color="0.5", alpha=0.08, lw=0)
        start += phase.seconds


def write_csv(samples: Sequence[Sample], path: Path) -> Path:
    names = list(Sample.__dataclass_fields__)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(names)
        for sample in samples:
            writer.writerow([getattr(sample, name) for name in names])
    return path


# --- the cluster ------------------------------------------------------------------------


def env() -> dict[str, str]:
    return {
        **os.environ,
        "KUBECONFIG": str(KUBECONFIG),
        "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }


def run(tool: str, *args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        [str(BIN / tool), *args],
        input=input,
        capture_output=True,
        text=True,
        env=env(),
        timeout=600,
        check=False,
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"`{tool} {shlex.join(args)}` failed:\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    return run("kubectl", *args, input=input, check=check)


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def wait(predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if value := predicate():
                return value
        except subprocess.SubprocessError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def values_file() -> Path:
    values = {
        "operator": {
            "cpuModelRepository": str(REPO / "triton-models"),
            "watchNamespaces": [NAMESPACE],
        },
        # plain HTTP, explicitly: the demo calls gateway pods by address (no cluster DNS)
        "gateway": {"watchNamespaces": [NAMESPACE], "shutdownDelay": 0, "tls": {"enabled": False}},
        "accessKeys": {
            "create": True,
            "keys": [{"name": KEY_NAME, "accessKeyId": KEY_ID, "namespaces": [NAMESPACE]}],
        },
        "networkPolicy": {"unitNamespaces": [NAMESPACE]},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "values.yaml"
    path.write_text(
        "# Written by hack/demo.py: charts/kiu on the local process cluster.\n"
        + json.dumps(values, indent=2)
        + "\n"
    )
    return path


def install() -> None:
    for namespace in (SYSTEM, NAMESPACE):
        manifest = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                },
            }
        )
        kubectl("apply", "-f", "-", input=manifest)
    say(f"helm upgrade --install {RELEASE} charts/kiu -n {SYSTEM} (operator x2, gateway x2)")
    run(
        "helm",
        "upgrade",
        "--install",
        RELEASE,
        str(REPO / "charts" / "kiu"),
        "--namespace",
        SYSTEM,
        "--values",
        str(values_file()),
        "--wait",
        "--timeout=300s",
    )
    # Polled: `kubectl wait` fails at once while a new CRD's status.conditions is still null.
    wait(
        lambda: (
            kubectl("get", "crd", "projectversions.kiu.dev", "-o", ESTABLISHED, check=False)
            == "True"
        ),
        timeout=60,
        what="the ProjectVersion CRD to be Established",
    )


def status(name: str = MODEL) -> dict[str, Any]:
    out = kubectl("get", "pjv", name, "-n", NAMESPACE, "-o", "json", check=False)
    return dict(json.loads(out).get("status") or {}) if out else {}


def apply_examples() -> None:
    if kubectl("get", "pjv", MODEL, "-n", NAMESPACE, "--ignore-not-found", "-o", "name"):
        say("removing the ProjectVersions of an earlier run, for a clean start")
        kubectl("delete", "-k", str(REPO / "examples"), "-n", NAMESPACE, "--wait=true")
        wait(
            lambda: (
                not kubectl(
                    "get",
                    "deployments,pods",
                    "-n",
                    NAMESPACE,
                    "-l",
                    "kiu.dev/projectversion",
                    "-o",
                    "name",
                )
            ),
            timeout=180,
            what="the units of the earlier run to be gone",
        )
    say(f"kubectl apply -k examples/ -n {NAMESPACE}")
    print(kubectl("apply", "-k", str(REPO / "examples"), "-n", NAMESPACE), end="")
    patch = {"spec": {"autoscaling": {"scaleDownDelaySeconds": SCALE_DOWN_DELAY}}}
    say(f"scale-down delay of {MODEL}: {SCALE_DOWN_DELAY} s (default 300) for a short demo")
    kubectl("patch", "pjv", MODEL, "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch))
    say(f"waiting for {MODEL} to be RUNNING with one unit in service")
    wait(
        lambda: (
            (s := status()).get("status") == "RUNNING" and s.get("inServiceInferenceUnits") == 1
        ),
        timeout=300,
        what=f"{MODEL} RUNNING",
    )
    print(kubectl("get", "pjv", "-n", NAMESPACE), end="")


def gateway_addresses() -> list[str]:
    """Where clients call the gateway: its Service's ClusterIP, as a user reaches it.

    kube-proxy balances each new connection over the ready replicas. A cluster
    started without kube-proxy (KIU_KUBE_PROXY=0, no iptables) has no ClusterIPs:
    then the ready replicas' pod addresses, one client each.
    """
    if (STATE / "config" / "kube-proxy.enabled").exists():
        ip = kubectl(
            "get", "service", GATEWAY_SERVICE, "-n", SYSTEM, "-o", "jsonpath={.spec.clusterIP}"
        )
        return [f"http://{ip.strip()}:8080"] * CLIENTS if _ready_gateway_pods() else []
    return _ready_gateway_pods()


def _ready_gateway_pods() -> list[str]:
    out = kubectl(
        "get",
        "endpointslices",
        "-n",
        SYSTEM,
        "-l",
        f"kubernetes.io/service-name={GATEWAY_SERVICE}",
        "-o",
        "json",
    )
    addresses = []
    for piece in json.loads(out)["items"]:
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready"):
                addresses.append(f"http://{endpoint['addresses'][0]}:8080")
    return sorted(addresses)


def secret_key() -> str:
    out = kubectl("get", "secret", SECRET, "-n", SYSTEM, "-o", "jsonpath={.data.secretAccessKey}")
    return base64.b64decode(out).decode()


# --- the run ----------------------------------------------------------------------------


def clients(addresses: Sequence[str], secret: str) -> list[Any]:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=32,
        connect_timeout=5,
        read_timeout=30,
    )
    session = boto3.session.Session()
    return [
        session.client(
            "rekognition",
            endpoint_url=address,
            region_name=NAMESPACE,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=secret,
            config=config,
        )
        for address in addresses
    ]


def drive(arn: str, rekognition: Sequence[Any], *, period: float) -> list[Sample]:
    """Send the profile's load, sample status every `period` seconds, print the table."""
    from botocore.exceptions import ClientError

    from kiu.imaging import scenes

    images = [s.image for s in scenes.scenes("classification", seed=3, count=24)]
    counters = Counters()
    in_flight = threading.Semaphore(48)

    def call(number: int) -> None:
        started = time.monotonic()
        try:
            rekognition[number % len(rekognition)].detect_custom_labels(
                ProjectVersionArn=arn, Image={"Bytes": images[number % len(images)]}
            )
            counters.record("ok", time.monotonic() - started)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            outcome = "throttled" if code == "ProvisionedThroughputExceededException" else "error"
            counters.record(outcome, 0.0, code)
        except Exception as error:  # connection refused, timeout: count it and go on
            counters.record("error", 0.0, type(error).__name__)
        finally:
            in_flight.release()

    samples: list[Sample] = []
    stop = threading.Event()

    def sampler(start: float) -> None:
        print(header(), flush=True)
        next_at = start + period
        while not stop.is_set():
            stop.wait(max(0.0, next_at - time.monotonic()))
            next_at += period
            t = time.monotonic() - start
            sent, admitted, throttled, errors, latencies = counters.take()
            current = status()
            elapsed = period
            sample = Sample(
                t=t,
                phase=rate_at(t)[0],
                offered=sent / elapsed,
                admitted=admitted / elapsed,
                throttled=throttled / elapsed,
                errors=errors / elapsed,
                p50_ms=_ms(percentile(latencies, 0.5)),
                p95_ms=_ms(percentile(latencies, 0.95)),
                desired=current.get("desiredInferenceUnits"),
                in_service=current.get("inServiceInferenceUnits"),
                tps_limit=current.get("tpsLimit"),
                demand=current.get("demandTps"),
                status=current.get("status", "?"),
            )
            samples.append(sample)
            print(row(sample), flush=True)
            if errors:
                print(f"        {errors} calls failed (last: {counters.last_error})", flush=True)

    start = time.monotonic()
    watcher = threading.Thread(target=sampler, args=(start,), daemon=True)
    watcher.start()
    skipped = 0
    with ThreadPoolExecutor(max_workers=24) as pool:
        for number, at in enumerate(schedule()):
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not in_flight.acquire(blocking=False):
                skipped += 1  # the client itself is saturated: do not queue without bound
                continue
            with counters.lock:
                counters.sent += 1
            pool.submit(call, number)
        time.sleep(max(0.0, start + duration() - time.monotonic()))
    stop.set()
    watcher.join(timeout=period * 2)
    if skipped:
        print(f"({skipped} calls not sent: the load generator had 48 calls outstanding)")
    return samples


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def instructions(png: Path, csv_path: Path) -> str:
    python = REPO / ".venv" / "bin" / "python"
    return f"""
The plot of this run: {png}
(the numbers behind it: {csv_path})

kiu is still running. Try:

  export KUBECONFIG={KUBECONFIG} PATH={BIN}:$PATH
  kubectl get pjv -n {NAMESPACE}
  kubectl describe pjv {MODEL} -n {NAMESPACE}     # conditions and scaling Events
  kubectl get pods -n {SYSTEM}                     # 2 operators (one holds the Lease), 2 gateways
  kubectl scale pjv/{MODEL} -n {NAMESPACE} --replicas=2    # raise the floor, live

Call the model with boto3 through the gateway's Service:

  export GATEWAY=http://$(kubectl get service {GATEWAY_SERVICE} -n {SYSTEM} \\
      -o jsonpath='{{.spec.clusterIP}}'):8080
  export AWS_ACCESS_KEY_ID={KEY_ID}
  export AWS_SECRET_ACCESS_KEY=$(kubectl get secret {SECRET} -n {SYSTEM} \\
      -o jsonpath='{{.data.secretAccessKey}}' | base64 -d)
  export ARN=$(kubectl get pjv {MODEL} -n {NAMESPACE} -o jsonpath='{{.status.arn}}')
  {python} - <<'EOF'
import os, boto3
from kiu.imaging import scenes
scene = next(scenes.scenes("classification", seed=7, count=1))
rek = boto3.client("rekognition", endpoint_url=os.environ["GATEWAY"], region_name="{NAMESPACE}")
answer = rek.detect_custom_labels(
    ProjectVersionArn=os.environ["ARN"], Image={{"Bytes": scene.image}}
)
print("drawn:", scene.objects[0].label, "| kiu says:", answer["CustomLabels"][:2])
EOF

When done:

  make demo-down      # uninstall kiu and stop the local cluster
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", type=float, default=3.0, help="seconds between table rows")
    parser.add_argument("--no-load", action="store_true", help="install and apply only")
    args = parser.parse_args(argv)
    if not KUBECONFIG.exists():
        print(f"no cluster: {KUBECONFIG} is missing (run hack/cluster.sh up)", file=sys.stderr)
        return 2
    install()
    apply_examples()
    if args.no_load:
        return 0
    addresses = wait(gateway_addresses, timeout=60, what="a ready gateway")
    arn = status()["arn"]
    say(
        f"load on {MODEL} from {len(addresses)} clients via {sorted(set(addresses))} for "
        f"{duration():.0f} s: one unit admits 5 calls/s, the load climbs to 14"
    )
    samples = drive(arn, clients(addresses, secret_key()), period=args.period)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    png = plot(samples, OUT / f"kiu-demo-{stamp}.png")
    table = write_csv(samples, OUT / f"kiu-demo-{stamp}.csv")
    peak = max((s.desired or 0) for s in samples) if samples else 0
    throttled = sum(s.throttled for s in samples) * args.period
    say(
        f"done: up to {peak} units; {throttled:.0f} calls throttled in all; median latency "
        f"{statistics.median([s.p50_ms for s in samples if s.p50_ms] or [0]):.0f} ms"
    )
    print(instructions(png, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
