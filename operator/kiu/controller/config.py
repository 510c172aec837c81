"""The operator's settings, from its command line (see `kiu operator --help`)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_GATEWAY_SELECTOR = "app.kubernetes.io/name=kiu,app.kubernetes.io/component=gateway"


@dataclass(frozen=True, kw_only=True)
class Config:
    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; empty means all."""
    evaluation_period: float = 3.0
    """Seconds between two demand samples and autoscaling evaluations: the longest period
    whose windows still show a step from 3 to 15 TPS beyond noise within 5 s of it, at
    any phase (docs/scaling.md)."""
    failure_timeout: float = 600.0
    """Seconds a unit may fail to start (crash loop, unschedulable) before the version is FAILED."""
    billing_period: float = 60.0
    """Seconds between two writes of the unit-hours ledger while units run (it is exact
    regardless: the ledger is also written on every change of the in-service count)."""
    workers: int = 4
    """ProjectVersions reconciled concurrently."""
    metrics_port: int = 8080
    gateway_selector: str = DEFAULT_GATEWAY_SELECTOR
    gateway_namespace: str | None = None
    gateway_port: int = 9090
    prometheus_url: str | None = None
    cpu_model_repository: str | None = None
    unit_image: str | None = None
    triton_image: str | None = None
    unit_log_format: str = "text"
    """The cpu runtime's log format: the operator passes its own."""
