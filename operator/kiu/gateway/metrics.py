"""The gateway's Prometheus metrics, all named ``kiu_gateway_*``.

Per model (labels ``namespace``, ``projectversion``):

* ``kiu_gateway_demand_total``: calls that reached the TPS budget of a RUNNING
  model, admitted or throttled (and, with no ready unit, refused as not ready):
  the counter the operator turns into a rate and scales on;
* ``kiu_gateway_requests_total`` (+ ``operation``, ``outcome`` = success,
  throttled, user_error, server_error): the reference's SuccessfulRequestCount,
  ThrottledCount, UserErrorCount and ServerErrorCount;
* ``kiu_gateway_model_request_duration_seconds`` (histogram, the buckets of
  :data:`LATENCY_BUCKETS`): per-model quantiles such as p99, and the reference's
  ResponseTime as sum over count;
* ``kiu_gateway_in_flight_requests``, ``kiu_gateway_tps_limit`` (the model's limit),
  ``kiu_gateway_tps_share`` (this replica's part), ``kiu_gateway_offered_rate``
  (calls/s this replica receives, which its share follows), ``kiu_gateway_ready_units``:
  gauges read from the routing table at scrape time, so they cost nothing per
  request and vanish with the model;
* ``kiu_gateway_held_requests`` (gauge): calls waiting for the first unit of a
  model scaled to zero; ``kiu_gateway_activations_total``: times this replica
  asked the operator to start a unit for such a call (:mod:`kiu.gateway.hold`).

Per gateway: ``kiu_gateway_request_duration_seconds`` (histogram by
``operation``, ``outcome``), ``kiu_gateway_unit_retries_total``,
``kiu_gateway_unit_failures_total`` (by ``reason``),
``kiu_gateway_auth_failures_total`` (by ``reason`` = error name),
``kiu_gateway_hold_rejections_total`` (by ``reason`` = full, timeout, shutdown),
``kiu_gateway_replicas``, ``kiu_gateway_http_in_flight_requests``; with the replica
exchange (:mod:`kiu.gateway.peers`) ``kiu_gateway_peers`` (by ``state`` = heard,
silent, gone) and ``kiu_gateway_share_fallback`` (1 while a known peer is silent and
its even share is held back for it; with no peer heard that is the even split).

The labelled children of each model are created once and kept on the model's
catalog entry, so recording a request is a few attribute reads and a locked add.
Scrapes may ask for a subset with ``/metrics?name[]=kiu_gateway_demand_total``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kiu.gateway.errors import Outcome

# Counters carry no *_created series: with thousands of models they would double a scrape.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class ModelGauges:
    """What the scrape-time gauges report for one model."""

    namespace: str
    name: str
    in_flight: int
    tps_limit: float
    tps_share: float
    ready_units: int
    held: int = 0
    offered_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class PeerGauges:
    """What this replica knows of the other gateway replicas (kiu.gateway.peers)."""

    heard: int
    silent: int
    gone: int


class ModelMeters:
    """The labelled children of one model, created once.

    The meters of calls that name no known model (``namespace`` and
    ``projectversion`` empty) count requests only.
    """

    __slots__ = ("_duration", "_family", "_labels", "_requests", "activations", "demand")

    def __init__(self, metrics: Metrics, namespace: str, name: str) -> None:
        self._family = metrics
        self._labels = (namespace, name)
        self._requests: dict[tuple[str, str], Any] = {}
        self.demand: Any = None
        self.activations: Any = None
        self._duration: Any = None
        if name:
            self.demand = metrics.demand.labels(namespace, name)
            self.activations = metrics.activations.labels(namespace, name)
            self._duration = metrics.model_duration.labels(namespace, name)

    def record(self, *, operation: str, outcome: Outcome, seconds: float) -> None:
        child = self._requests.get((operation, outcome))
        if child is None:
            child = self._family.requests.labels(*self._labels, operation, outcome)
            self._requests[(operation, outcome)] = child
        child.inc()
        if self._duration is not None:
            self._duration.observe(seconds)
        self._family.observe(operation=operation, outcome=outcome, seconds=seconds)

    def forget(self) -> None:
        """Drop the model's series (the model is gone)."""
        family = self._family
        for operation, outcome in self._requests:
            _remove(family.requests, *self._labels, operation, outcome)
        _remove(family.demand, *self._labels)
        _remove(family.activations, *self._labels)
        _remove(family.model_duration, *self._labels)
        self._requests.clear()


def _remove(metric: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


class Metrics:
    """Every gateway metric, in a registry of its own."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        model = ("namespace", "projectversion")
        self.demand = Counter(
            "kiu_gateway_demand",
            "Calls that reached a running model's TPS budget (admitted + throttled).",
            model,
            registry=self.registry,
        )
        self.activations = Counter(
            "kiu_gateway_activations",
            "Activation signals written for a model at zero units (one per interval at most).",
            model,
            registry=self.registry,
        )
        self.hold_rejections = Counter(
            "kiu_gateway_hold_rejections",
            "Calls to a model at zero units refused by the hold queue, by reason.",
            ("reason",),
            registry=self.registry,
        )
        self.requests = Counter(
            "kiu_gateway_requests",
            "Requests by model, operation and outcome.",
            (*model, "operation", "outcome"),
            registry=self.registry,
        )
        self.model_duration = Histogram(
            "kiu_gateway_model_request_duration_seconds",
            "Time to answer a request to a model.",
            model,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "kiu_gateway_request_duration_seconds",
            "Time to answer a request.",
            ("operation", "outcome"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "kiu_gateway_unit_retries",
            "Calls retried on another unit after the first did not answer.",
            registry=self.registry,
        )
        self.unit_failures = Counter(
            "kiu_gateway_unit_failures",
            "Calls to units that failed, by reason.",
            ("reason",),
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "kiu_gateway_auth_failures",
            "Requests refused by authentication or authorization, by error name.",
            ("reason",),
            registry=self.registry,
        )
        self.http_in_flight = Gauge(
            "kiu_gateway_http_in_flight_requests",
            "HTTP requests this gateway is handling now.",
            registry=self.registry,
        )
        self._durations: dict[tuple[str, str], Any] = {}
        self._failures: dict[str, Any] = {}
        self.unattributed = ModelMeters(self, "", "")

    def model(self, namespace: str, name: str) -> ModelMeters:
        return ModelMeters(self, namespace, name)

    def unit_failed(self, reason: str) -> None:
        """Count a call a unit failed (unavailable, deadline, rejected, failed)."""
        child = self._failures.get(reason)
        if child is None:
            child = self._failures[reason] = self.unit_failures.labels(reason)
        child.inc()

    def observe(self, *, operation: str, outcome: str, seconds: float) -> None:
        child = self._durations.get((operation, outcome))
        if child is None:
            child = self._durations[(operation, outcome)] = self.duration.labels(operation, outcome)
        child.observe(seconds)

    def watch(
        self,
        *,
        models: Callable[[], Iterable[ModelGauges]],
        replicas: Callable[[], int],
    ) -> None:
        """Report gauges read at scrape time from the routing table."""
        self.registry.register(_Gauges(models=models, replicas=replicas))

    def watch_peers(self, peers: Callable[[], PeerGauges | None]) -> None:
        """Report the replica exchange's view of the peers at scrape time."""
        self.registry.register(_PeerGauges(peers))

    def exposition(self, names: Iterable[str] | None = None) -> bytes:
        """The text exposition, optionally restricted to some metric names."""
        registry: Any = self.registry
        if names is not None:
            registry = self.registry.restricted_registry(list(names))
        return prometheus_client.generate_latest(registry)


class _Gauges(Collector):
    _NAMES = (
        "kiu_gateway_in_flight_requests",
        "kiu_gateway_tps_limit",
        "kiu_gateway_tps_share",
        "kiu_gateway_offered_rate",
        "kiu_gateway_ready_units",
        "kiu_gateway_held_requests",
        "kiu_gateway_replicas",
    )

    def __init__(
        self,
        *,
        models: Callable[[], Iterable[ModelGauges]],
        replicas: Callable[[], int],
    ) -> None:
        self._models = models
        self._replicas = replicas

    def describe(self) -> Iterator[GaugeMetricFamily]:
        for name in self._NAMES:
            yield GaugeMetricFamily(name, "", labels=())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ("namespace", "projectversion")
        in_flight = GaugeMetricFamily(
            "kiu_gateway_in_flight_requests",
            "Requests of a model being answered by its units now.",
            labels=labels,
        )
        limit = GaugeMetricFamily(
            "kiu_gateway_tps_limit",
            "A model's TPS limit: TPS per unit x ready units.",
            labels=labels,
        )
        share = GaugeMetricFamily(
            "kiu_gateway_tps_share",
            "This gateway replica's share of a model's TPS limit.",
            labels=labels,
        )
        offered = GaugeMetricFamily(
            "kiu_gateway_offered_rate",
            "Calls per second this gateway replica receives for a model (its share follows).",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            "kiu_gateway_ready_units", "Ready units of a model in the routing table.", labels=labels
        )
        held = GaugeMetricFamily(
            "kiu_gateway_held_requests",
            "Calls waiting for the first unit of a model scaled to zero.",
            labels=labels,
        )
        for m in self._models():
            key = (m.namespace, m.name)
            in_flight.add_metric(key, m.in_flight)
            limit.add_metric(key, m.tps_limit)
            share.add_metric(key, m.tps_share)
            offered.add_metric(key, m.offered_rate)
            ready.add_metric(key, m.ready_units)
            held.add_metric(key, m.held)
        yield in_flight
        yield limit
        yield share
        yield offered
        yield ready
        yield held
        yield GaugeMetricFamily(
            "kiu_gateway_replicas",
            "Gateway replicas sharing each model's TPS limit.",
            value=self._replicas(),
        )


class _PeerGauges(Collector):
    def __init__(self, peers: Callable[[], PeerGauges | None]) -> None:
        self._peers = peers

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("kiu_gateway_peers", "", labels=("state",))
        yield GaugeMetricFamily("kiu_gateway_share_fallback", "", labels=())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        seen = self._peers()
        if seen is None:  # the exchange has not ticked yet
            return
        peers = GaugeMetricFamily(
            "kiu_gateway_peers",
            "Other gateway replicas by state: heard (recently), silent (reserved), gone.",
            labels=("state",),
        )
        for state, count in (("heard", seen.heard), ("silent", seen.silent), ("gone", seen.gone)):
            peers.add_metric((state,), count)
        yield peers
        yield GaugeMetricFamily(
            "kiu_gateway_share_fallback",
            "1 while a known peer is silent and keeps an even share of every limit.",
            value=1 if seen.silent else 0,
        )
