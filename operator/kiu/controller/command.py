"""`kiu operator`: reconcile ProjectVersions into inference units.

Starts the metrics server, waits for the leader Lease (unless --standalone),
then runs kopf until a signal arrives or the Lease is lost. Losing the Lease
exits at once with status 1: the replica that took over acts from then on.
Every option can also be given as the environment variable shown beside it,
which the command line overrides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import kopf
from aiohttp import web

from kiu import logs, options
from kiu.controller import demand, handlers, manager, metrics, reconciler
from kiu.controller.config import DEFAULT_GATEWAY_SELECTOR, Config
from kiu.k8s import client, errors, events, lease

logger = logging.getLogger(__name__)

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_COMPONENT = "kiu-operator"
_DEFAULTS = Config()


def _parser() -> argparse.ArgumentParser:
    p = options.parser(prog="kiu operator", description=__doc__)
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else in-cluster)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        help="serve ProjectVersions in this namespace (repeatable; default: all)",
    )
    scope.add_argument(
        "--all-namespaces",
        action="store_const",
        dest="namespaces",
        const=[],
        help="serve every namespace (the default)",
    )
    p.add_argument(
        "--evaluation-period",
        type=float,
        default=_DEFAULTS.evaluation_period,
        help="seconds between demand samples and autoscaling evaluations",
    )
    p.add_argument(
        "--failure-timeout",
        type=float,
        default=_DEFAULTS.failure_timeout,
        help="seconds units may fail to start before the version is FAILED",
    )
    p.add_argument(
        "--billing-period",
        type=float,
        default=_DEFAULTS.billing_period,
        help="seconds between unit-hours writes",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=_DEFAULTS.workers,
        help="ProjectVersions reconciled concurrently",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=_DEFAULTS.metrics_port,
        help="port of /metrics and /healthz",
    )
    p.add_argument(
        "--gateway-selector",
        default=DEFAULT_GATEWAY_SELECTOR,
        help="label selector of gateway pods",
    )
    p.add_argument("--gateway-namespace", help="namespace of the gateway pods (default: all)")
    p.add_argument(
        "--gateway-port",
        type=int,
        default=_DEFAULTS.gateway_port,
        help="internal port of the gateway pods' /metrics",
    )
    p.add_argument(
        "--prometheus-url", help="read demand from this Prometheus server instead of the gateways"
    )
    p.add_argument(
        "--cpu-model-repository", help="host directory of local model repositories (cpu runtime)"
    )
    p.add_argument("--unit-image", help="container image of cpu-runtime units")
    p.add_argument("--triton-image", help="container image of triton-runtime units")
    p.add_argument("--standalone", action="store_true", help="act without the leader Lease")
    p.add_argument("--lease", default="kiu-operator", help="name of the leader-election Lease")
    p.add_argument("--lease-namespace", help="namespace of the Lease (default: the operator's own)")
    p.add_argument(
        "--identity", help="this replica's name in the Lease (default: $POD_NAME or host-pid)"
    )
    options.add_logging(p)
    return p


def _config(args: argparse.Namespace) -> Config:
    return Config(
        namespaces=tuple(args.namespaces or ()),
        evaluation_period=args.evaluation_period,
        failure_timeout=args.failure_timeout,
        billing_period=args.billing_period,
        workers=args.workers,
        metrics_port=args.metrics_port,
        gateway_selector=args.gateway_selector,
        gateway_namespace=args.gateway_namespace,
        gateway_port=args.gateway_port,
        prometheus_url=args.prometheus_url,
        cpu_model_repository=args.cpu_model_repository,
        unit_image=args.unit_image,
        triton_image=args.triton_image,
        unit_log_format=args.log_format,
    )


def _own_namespace() -> str:
    if namespace := os.environ.get("POD_NAMESPACE"):
        return namespace
    with contextlib.suppress(OSError):
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def main(argv: Sequence[str]) -> int:
    args = options.parse(_parser(), argv)
    logs.configure(level=args.log_level, format=args.log_format)
    if logging.getLogger().level > logging.DEBUG:
        # kopf reports every handled watch event at INFO; the reconciler logs what it does.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own client reads it too
    try:
        return asyncio.run(_run(args, _config(args)))
    except errors.KubernetesError as exc:
        logger.error("cannot reach the Kubernetes API: %s", exc)
        return 1


async def _run(args: argparse.Namespace, config: Config) -> int:
    identity = (
        args.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    )
    api = await client.connect(kubeconfig=args.kubeconfig)
    async with api, aiohttp.ClientSession() as session:
        source: demand.Source = (
            demand.PrometheusSource(session=session, url=config.prometheus_url)
            if config.prometheus_url
            else demand.GatewayScraper(
                api=api,
                session=session,
                selector=config.gateway_selector,
                port=config.gateway_port,
                namespace=config.gateway_namespace,
            )
        )
        recorder = events.Recorder(api, component=_COMPONENT, instance=identity)
        the_reconciler = reconciler.Reconciler(api=api, config=config, recorder=recorder)
        the_metrics = metrics.Metrics(memory=lambda: the_reconciler.memory)
        operator = manager.Manager(
            reconciler=the_reconciler,
            source=source,
            metrics=the_metrics,
            evaluation_period=config.evaluation_period,
            workers=config.workers,
        )
        runner = web.AppRunner(metrics.app(metrics=the_metrics, healthy=operator.healthy))
        await runner.setup()
        await web.TCPSite(runner, port=config.metrics_port).start()
        try:
            return await _lead(args, config, api, identity, operator, the_metrics)
        finally:
            await runner.cleanup()


async def _lead(
    args: argparse.Namespace,
    config: Config,
    api: client.ApiClient,
    identity: str,
    operator: manager.Manager,
    the_metrics: metrics.Metrics,
) -> int:
    elector = None
    if not args.standalone:
        elector = lease.Elector(
            api=api,
            namespace=args.lease_namespace or _own_namespace(),
            name=args.lease,
            identity=identity,
        )
        await elector.acquire()
    the_metrics.leader.set(1)
    stop = asyncio.Event()
    running = asyncio.create_task(
        kopf.operator(
            registry=handlers.registry(operator),
            settings=handlers.settings(),
            standalone=True,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            stop_flag=stop,
        ),
        name="kopf",
    )
    holding = asyncio.create_task(
        elector.hold() if elector else asyncio.Event().wait(), name="lease"
    )
    done, _ = await asyncio.wait({running, holding}, return_when=asyncio.FIRST_COMPLETED)
    the_metrics.leader.set(0)
    if holding in done:
        logger.error("stopping: %s", holding.exception())
        stop.set()
        await operator.stop()  # no more writes from this replica, even while kopf winds down
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(running, timeout=10)
        return 1
    holding.cancel()
    if elector:
        await elector.release()
    return 0 if running.exception() is None else 1
