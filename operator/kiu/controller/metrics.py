"""The operator's Prometheus metrics and its small HTTP server (/metrics, /healthz).

The per-model figures (desired, in service, min, max, capacity at max,
unit-seconds, demand, reported status and Degraded condition) are
read from the reconciler's memory at scrape time rather than kept in gauges, so
a deleted ProjectVersion simply stops appearing and unit-seconds are exact to
the scrape (the ledger plus the units in service since its last entry).
Reconcile counts, errors and durations are labelled the same way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Summary, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kiu.policy import budget

if TYPE_CHECKING:
    from kiu.controller.reconciler import Key, Memory

_LABELS = ("namespace", "projectversion")


class _Models(Collector):
    """Reads the per-model figures from the reconciler's memory on each scrape."""

    def __init__(self, memory: Callable[[], Mapping[Key, Memory]], clock: Callable[[], float]):
        self._memory = memory
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        desired = GaugeMetricFamily(
            "kiu_desired_inference_units", "Units wanted now.", labels=_LABELS
        )
        in_service = GaugeMetricFamily(
            "kiu_in_service_inference_units", "Units ready to serve.", labels=_LABELS
        )
        floor = GaugeMetricFamily(
            "kiu_min_inference_units", "spec.minInferenceUnits.", labels=_LABELS
        )
        ceiling = GaugeMetricFamily(
            "kiu_max_inference_units",
            "spec.maxInferenceUnits (absent: no autoscaling).",
            labels=_LABELS,
        )
        unit_seconds = CounterMetricFamily(
            "kiu_inference_unit_seconds",
            "In-service units integrated over time (billing), persisted in status.",
            labels=_LABELS,
        )
        demand = GaugeMetricFamily(
            "kiu_demand_tps", "Calls per second received, admitted or throttled.", labels=_LABELS
        )
        capacity = GaugeMetricFamily(
            "kiu_max_capacity_tps",
            "TPS the version serves at its largest size (max units, else min units).",
            labels=_LABELS,
        )
        status = GaugeMetricFamily(
            "kiu_projectversion_status",
            "1 for the status a ProjectVersion reports (RUNNING, FAILED, ...).",
            labels=(*_LABELS, "status"),
        )
        degraded = GaugeMetricFamily(
            "kiu_projectversion_degraded",
            "1 while a ProjectVersion's Degraded condition is True.",
            labels=_LABELS,
        )
        now = self._clock()
        for key, memory in list(self._memory().items()):
            if memory.pv is None:
                continue
            labels = list(key)
            reported = memory.pv.status
            if reported.status is not None:
                status.add_metric([*labels, reported.status], 1)
            is_degraded = any(
                c.type == "Degraded" and c.status == "True" for c in reported.conditions
            )
            degraded.add_metric(labels, 1 if is_degraded else 0)
            if memory.decision is None:
                continue
            spec = memory.pv.spec
            desired.add_metric(labels, memory.decision.desired)
            in_service.add_metric(labels, memory.in_service)
            floor.add_metric(labels, spec.min_inference_units)
            if spec.max_inference_units is not None:
                ceiling.add_metric(labels, spec.max_inference_units)
            largest = max(spec.min_inference_units, spec.max_inference_units or 0)
            capacity.add_metric(
                labels,
                budget.tps_limit(tps_per_unit=spec.inference_unit.tps, ready_units=largest),
            )
            ledger = memory.ledger
            if ledger is not None:
                running = max(now - (ledger.last_time or now), 0.0) * ledger.last_units
                unit_seconds.add_metric(labels, ledger.unit_seconds + running)
            if memory.demand is not None:
                demand.add_metric(labels, memory.demand)
        yield from (desired, in_service, floor, ceiling, capacity, unit_seconds, demand)
        yield from (status, degraded)


class Metrics:
    def __init__(
        self,
        *,
        memory: Callable[[], Mapping[Key, Memory]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Models(memory, clock))
        self._durations = Summary(
            "kiu_reconcile_duration_seconds",
            "Time to reconcile a ProjectVersion; _count is the number of reconciles.",
            _LABELS,
            registry=self.registry,
        )
        self._errors = Counter(
            "kiu_reconcile_errors",
            "Reconciles that failed and were retried.",
            _LABELS,
            registry=self.registry,
        )
        self._samples = Counter(
            "kiu_demand_samples",
            "Demand samples taken; result=unknown when no gateway or Prometheus answered.",
            ["result"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "kiu_operator_leader",
            "1 while this replica holds the leader Lease and acts, else 0.",
            registry=self.registry,
        )

    def reconciled(self, key: Key, seconds: float) -> None:
        self._durations.labels(*key).observe(seconds)

    def failed(self, key: Key) -> None:
        self._errors.labels(*key).inc()

    def sampled(self, *, known: bool) -> None:
        self._samples.labels("ok" if known else "unknown").inc()

    def forget(self, key: Key) -> None:
        for metric in (self._durations, self._errors):
            with contextlib.suppress(KeyError):
                metric.remove(*key)


def app(*, metrics: Metrics, healthy: Callable[[], bool]) -> web.Application:
    """/metrics in the Prometheus text format; /healthz 200 while the operator's loops run."""

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def health(_: web.Request) -> web.Response:
        ok = healthy()
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "unhealthy\n")

    application = web.Application()
    application.router.add_get("/metrics", scrape)
    application.router.add_get("/healthz", health)
    return application
