"""Demand per model (admitted + throttled calls per second), measured once for all models.

Either scrape every gateway replica's `/metrics` directly (found by label
selector, no Prometheus needed) and turn the counters into rates with
`kiu.policy.demand`, or ask a Prometheus server that already scrapes them. One
sample per evaluation period serves every ProjectVersion, so the cost does not
grow with their number.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from prometheus_client import parser

from kiu.k8s import client, errors, pods
from kiu.policy import demand

logger = logging.getLogger(__name__)

#: (namespace, name) of a ProjectVersion.
Key = tuple[str, str]

#: The gateway's counter of calls received per model, admitted or throttled.
METRIC = "kiu_gateway_demand_total"
#: The same rate, computed by Prometheus from the same counters over the last minute.
PROMQL = f"sum by (namespace, projectversion) (rate({METRIC}[1m]))"
RANGE_SECONDS = 60.0


class Source(Protocol):
    async def sample(self, *, now: float) -> Mapping[Key, float] | None:
        """TPS per model now (models not listed have none), or None if it cannot be known."""

    @property
    def window(self) -> float | None:
        """Seconds the last sample measured over (None: not known yet).

        The scaling policy weighs a sample by it: a rate over 60 s is a count of twelve
        times as many calls as one over 5 s, with a third of the relative noise.
        """


def parse(text: str) -> dict[tuple[Key, str], float]:
    """The demand counters of one `/metrics` page, by model and series (the other labels).

    Only the lines of the one metric are parsed: a gateway page holds many other
    series, and the parser is pure Python.
    """
    lines = "\n".join(line for line in text.splitlines() if line.startswith(METRIC))
    counters: dict[tuple[Key, str], float] = {}
    for family in parser.text_string_to_metric_families(lines):
        for sample in family.samples:
            labels = dict(sample.labels)
            if sample.name != METRIC or "namespace" not in labels or "projectversion" not in labels:
                continue
            key = (labels.pop("namespace"), labels.pop("projectversion"))
            series = ",".join(f"{name}={value}" for name, value in sorted(labels.items()))
            counters[key, series] = sample.value
    return counters


@dataclass(frozen=True, slots=True)
class _Seen:
    """A gateway replica's counters at its last successful scrape."""

    time: float
    counters: Mapping[tuple[Key, str], float]


class GatewayScraper:
    """Scrapes the gateway pods and turns each replica's counters into rates.

    Each replica is measured over its own interval, from its last successful
    scrape to this one, and the replicas' rates are summed per model. A replica
    that does not answer is left out of one sample instead of counting zero now
    and double next time; its next answer covers the whole gap. A replica that
    was not there in the previous round is new: its whole count is demand since
    then. The first round only sets the baseline (demand unknown).
    """

    def __init__(
        self,
        *,
        api: client.ApiClient,
        session: aiohttp.ClientSession,
        selector: str,
        port: int,
        namespace: str | None = None,
        timeout: float = 2.0,
    ) -> None:
        self._api = api
        self._session = session
        self._selector = selector
        self._port = port
        self._namespace = namespace
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._seen: dict[str, _Seen] = {}
        self._listed: set[str] = set()
        self._round: float | None = None
        self._window: float | None = None

    @property
    def window(self) -> float | None:
        """The time between the last two rounds (each replica's own interval is close to it)."""
        return self._window

    async def sample(self, *, now: float) -> Mapping[Key, float] | None:
        try:
            gateways = await pods.running(
                self._api, label_selector=self._selector, namespace=self._namespace
            )
        except errors.KubernetesError as exc:
            logger.warning("listing gateway pods failed: %s", exc)
            return None
        pages = await asyncio.gather(*(self._scrape(pod) for pod in gateways))
        names = [f"{pod.namespace}/{pod.name}" for pod in gateways]
        previous_round, listed = self._round, self._listed
        self._round, self._listed = now, set(names)
        self._window = None if previous_round is None else now - previous_round
        self._seen = {name: seen for name, seen in self._seen.items() if name in self._listed}
        rates: defaultdict[Key, float] = defaultdict(float)
        measured = False
        for name, page in zip(names, pages, strict=True):
            if page is None:
                continue
            seen = self._seen.get(name)
            self._seen[name] = _Seen(time=now, counters=page)
            if seen is None and (previous_round is None or name in listed):
                continue  # a baseline: first round, or it failed every time so far
            since = seen or _Seen(time=previous_round or now, counters={})
            for key, rate in _rates(since, _Seen(time=now, counters=page)).items():
                rates[key] += rate
            measured = True
        if not measured:
            if gateways and all(page is None for page in pages):
                logger.warning("no gateway answered on /metrics (%d pods)", len(gateways))
            return None
        return rates

    async def _scrape(self, pod: pods.Address) -> dict[tuple[Key, str], float] | None:
        url = f"http://{pod.ip}:{self._port}/metrics"
        try:
            # prometheus_client servers (the gateway's) answer with the one metric only.
            async with self._session.get(
                url, params={"name[]": METRIC}, timeout=self._timeout
            ) as response:
                response.raise_for_status()
                return parse(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning(
                "scraping gateway %s/%s at %s failed: %s", pod.namespace, pod.name, url, exc
            )
            return None


class PrometheusSource:
    """Asks a Prometheus server for the rate of the gateways' demand counters."""

    def __init__(self, *, session: aiohttp.ClientSession, url: str, timeout: float = 5.0) -> None:
        self._session = session
        self._url = url.rstrip("/") + "/api/v1/query"
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def window(self) -> float:
        """The range of the rate in `PROMQL`."""
        return RANGE_SECONDS

    async def sample(self, *, now: float) -> Mapping[Key, float] | None:
        try:
            async with self._session.get(
                self._url, params={"query": PROMQL}, timeout=self._timeout
            ) as response:
                response.raise_for_status()
                answer = await response.json()
            rates = {
                (item["metric"]["namespace"], item["metric"]["projectversion"]): float(
                    item["value"][1]
                )
                for item in answer["data"]["result"]
                if "namespace" in item["metric"] and "projectversion" in item["metric"]
            }
            return {key: rate for key, rate in rates.items() if math.isfinite(rate)}
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            logger.warning("querying Prometheus at %s failed: %s", self._url, exc)
            return None


def _rates(before: _Seen, after: _Seen) -> dict[Key, float]:
    """Per-model rates of one replica between two of its scrapes (`kiu.policy.demand`)."""
    models = {key for key, _ in after.counters} | {key for key, _ in before.counters}
    rates = {}
    for key in models:
        rate = demand.rate(
            previous=demand.Scrape(time=before.time, counters=_series(before.counters, key)),
            current=demand.Scrape(time=after.time, counters=_series(after.counters, key)),
        )
        if rate is not None:
            rates[key] = rate
    return rates


def _series(counters: Mapping[tuple[Key, str], float], key: Key) -> dict[str, float]:
    return {series: value for (model, series), value in counters.items() if model == key}
