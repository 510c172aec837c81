"""End to end, with the chart installed: one TPS limit across the gateway replicas.

Two, then three, chart-installed gateway replicas in front of one unit (limit
10 TPS). Clients are boto3 with keep-alive connections straight to one replica
each (pod addresses: the local cluster has no kube-proxy), so the split of the
calls is whatever the test chooses. The replicas find each other through their
Service's EndpointSlices and exchange offered rates on the internal port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from kiu.imaging import scenes
from tests.chart import chart
from tests.chart.chart import Release
from tests.cluster.fixtures import Cluster, wait_for
from tests.operator import harness

pytestmark = pytest.mark.cluster

NAME = "shared"
LIMIT = 10.0  # tps 10 x 1 unit
SECONDS = 8.0
IMAGE = next(scenes.scenes("classification", seed=5, count=1)).image


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[Release]:
    with chart.installed(cluster, namespace, "gateway.replicas=2") as installed:
        body = harness.projectversion(NAME, minInferenceUnits=1, maxInferenceUnits=1)
        body["spec"]["inferenceUnit"]["tps"] = LIMIT
        cluster.apply(body, namespace)
        harness.wait_status(cluster, namespace, NAME, status="RUNNING", inServiceInferenceUnits=1)
        yield installed


def peers(release: Release, address: str, state: str) -> float:
    return release.gateway_metrics(address).get(("kiu_gateway_peers", (("state", state),)), -1.0)


def pod_at(release: Release, address: str) -> Any:
    """The gateway pod serving at host:port."""
    host = address.rsplit(":", 1)[0]
    return next(p for p in release.pods("gateway") if p.status.pod_ip == host)


def all_hear_each_other(release: Release, replicas: int) -> list[str]:
    def ready() -> list[str] | None:
        addresses = release.gateway_addresses()
        if len(addresses) != replicas:
            return None
        if all(peers(release, a, "heard") == replicas - 1 for a in addresses):
            return addresses
        return None

    found: list[str] = wait_for(
        ready, timeout=120, interval=0.5, what=f"{replicas} replicas hearing each other"
    )
    return found


def offer(release: Release, arn: str, rates: dict[str, float], seconds: float) -> dict[str, int]:
    """One boto3 client per address (one keep-alive connection each, no retries) calling
    at its rate for `seconds`; admitted calls per address."""
    admitted = dict.fromkeys(rates, 0)
    lock = threading.Lock()

    def client_loop(address: str, rate: float) -> None:
        client = release.rekognition(f"http://{address}", connections=1)
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": IMAGE})
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                assert code == "ProvisionedThroughputExceededException", code
                continue
            with lock:
                admitted[address] += 1

    with ThreadPoolExecutor(max_workers=len(rates)) as pool:
        for future in [pool.submit(client_loop, a, r) for a, r in rates.items() if r > 0]:
            future.result()
    return admitted


def expected(seconds: float, *, limit: float = LIMIT) -> tuple[float, float]:
    """Bounds of what replicas sharing `limit` admit in `seconds` at twice the limit: the
    limit over the run, plus at most one second of it held in the buckets, within 10 %."""
    return 0.9 * limit * seconds, 1.1 * (limit * seconds + limit)


def test_replicas_admit_the_limit_together_whatever_the_split(
    release: Release, cluster: Cluster, namespace: str
) -> None:
    arn = release.status(NAME)["arn"]
    a, b = all_hear_each_other(release, 2)
    low, high = expected(SECONDS)
    for split in ((1.0, 0.0), (0.8, 0.2)):
        rates = {a: 2 * LIMIT * split[0], b: 2 * LIMIT * split[1]}
        admitted = offer(release, arn, rates, SECONDS)
        print(f"split {split}: admitted {admitted} of a limit of {LIMIT}/s for {SECONDS} s")
        assert low <= sum(admitted.values()) <= high, (split, admitted)
        time.sleep(2)  # the offered-rate windows empty, the buckets refill

    cluster.kubectl("scale", "deployment", f"{chart.RELEASE}-gateway", "-n", namespace,
                    "--replicas=3")  # fmt: skip
    a, b, c = all_hear_each_other(release, 3)
    rates = {a: 2 * LIMIT * 0.7, b: 2 * LIMIT * 0.2, c: 2 * LIMIT * 0.1}
    admitted = offer(release, arn, rates, SECONDS)
    print(f"split 70/20/10: admitted {admitted}")
    assert low <= sum(admitted.values()) <= high, admitted


def test_a_killed_replica_leaves_its_share_to_the_survivor(
    release: Release, cluster: Cluster, namespace: str
) -> None:
    arn = release.status(NAME)["arn"]
    a, b = all_hear_each_other(release, 2)
    victim, survivor = pod_at(release, b), pod_at(release, a).status.pod_ip
    done = threading.Event()
    took_over: list[float] = []

    def found_gone() -> int:
        return release.peer_found_gone(survivor, victim.status.pod_ip)

    def kill_under_load() -> None:
        time.sleep(2)
        before = found_gone()  # (it may have been found gone already, while it started)
        cluster.kill_pod_process(namespace, victim.metadata.name, signal="KILL")
        killed = time.monotonic()
        # Under a 100/0 split the survivor's share is already (almost) the whole limit:
        # what matters is that the dead peer is found gone, not taken for a silent one
        # whose share would be held back.
        wait_for(
            lambda: found_gone() > before,
            timeout=30,
            interval=0.2,
            what="the survivor to find its peer gone",
        )
        took_over.append(time.monotonic() - killed)
        done.set()

    watcher = threading.Thread(target=kill_under_load)
    watcher.start()
    offer(release, arn, {a: 2 * LIMIT}, 4.0)  # a 100/0 split while it happens
    watcher.join()
    assert done.is_set()
    print(f"the survivor found its peer gone within {took_over[0]:.2f} s of the SIGKILL")
    # The survivor alone admits the whole limit (its peer may be back meanwhile: then the
    # two share it by demand, which is all at the survivor).
    admitted = offer(release, arn, {a: 2 * LIMIT}, SECONDS)
    low, high = expected(SECONDS)
    assert low <= admitted[a] <= high, admitted


def test_a_frozen_replica_keeps_its_share_and_the_others_stay_within_the_limit(
    release: Release, cluster: Cluster, namespace: str
) -> None:
    arn = release.status(NAME)["arn"]
    a, b = all_hear_each_other(release, 2)
    victim = pod_at(release, b)
    cluster.kill_pod_process(namespace, victim.metadata.name, signal="STOP")
    try:
        wait_for(
            lambda: peers(release, a, "silent") == 1,
            timeout=30,
            interval=0.2,
            what="the peer silent",
        )
        admitted = offer(release, arn, {a: 2 * LIMIT}, SECONDS)
    finally:
        cluster.kill_pod_process(namespace, victim.metadata.name, signal="CONT")
    # Half the limit (the frozen replica keeps the other half), plus what its bucket held.
    print(f"with its peer frozen: admitted {admitted}")
    assert admitted[a] <= LIMIT / 2 * SECONDS + LIMIT / 2 + 1
