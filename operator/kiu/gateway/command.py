"""``kiu gateway``: parse options, wire the pieces, serve until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from kiu import logs, options
from kiu.gateway import (
    auth,
    catalog,
    dataplane,
    directory,
    grants,
    hold,
    metrics,
    objects,
    peers,
    routing,
    server,
    tls,
    upstream,
    verification,
)

log = logging.getLogger("kiu.gateway")


def parser() -> argparse.ArgumentParser:
    p = options.parser(
        prog="kiu gateway",
        description="Serve the compatible API, enforce each model's TPS, route to its units.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--directory",
        metavar="FILE",
        help="static models, units and keys (YAML/JSON), re-read on change",
    )
    source.add_argument(
        "--kubernetes",
        action="store_true",
        help="watch ProjectVersions, EndpointSlices and Secrets",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="the API's port (default 8080)")
    p.add_argument(
        "--internal-port",
        type=int,
        default=9090,
        help="port of /healthz, /readyz, /metrics and the replica exchange (default 9090)",
    )
    x = p.add_argument_group("replica exchange (each model's limit shared by demand)")
    x.add_argument(
        "--exchange-period",
        type=float,
        default=peers.DEFAULT_PERIOD,
        help="seconds between exchanges of offered rates with the other replicas; "
        "0 turns the exchange off: an even split (default 0.2)",
    )
    x.add_argument(
        "--peer",
        dest="peers",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="another replica's internal port (repeatable; with --kubernetes the ready "
        "endpoints of --gateway-service are the peers)",
    )
    k = p.add_argument_group("Kubernetes")
    k.add_argument("--kubeconfig", help="kubeconfig file (default $KUBECONFIG, else in-cluster)")
    k.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="watch ProjectVersions in NS (repeatable; default all)",
    )
    k.add_argument(
        "--gateway-namespace",
        default=os.environ.get("POD_NAMESPACE", "kiu-system"),
        help="the gateway's own namespace (default $POD_NAMESPACE)",
    )
    k.add_argument(
        "--gateway-service",
        default="kiu-gateway",
        help="the gateway's own Service: its ready endpoints share each TPS limit",
    )
    k.add_argument(
        "--credentials-namespace",
        help="namespace of the access-key Secrets (default: the gateway's)",
    )
    keys = k.add_mutually_exclusive_group()
    keys.add_argument(
        "--access-key-secret",
        action="append",
        default=[],
        dest="access_key_secrets",
        metavar="NAME",
        help="read access keys from this Secret of the credentials namespace (repeatable); "
        "the gateway needs read access to these Secrets only",
    )
    keys.add_argument(
        "--discover-access-keys",
        action="store_true",
        help="read access keys from every Secret of the credentials namespace labelled "
        "kiu.dev/access-key (needs list on all its Secrets: give it a namespace of its own)",
    )
    p.add_argument(
        "--zone",
        help="own zone (default: the zone label of the node $NODE_NAME)",
    )
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="accept unsigned requests (never in production)",
    )
    secure = p.add_argument_group("TLS (HTTPS for callers)")
    secure.add_argument(
        "--tls-cert", type=Path, help="certificate chain (PEM), e.g. tls.crt of a TLS Secret"
    )
    secure.add_argument("--tls-key", type=Path, help="its private key (PEM), e.g. tls.key")
    secure.add_argument(
        "--tls-reload-seconds",
        type=float,
        default=tls.DEFAULT_RELOAD_SECONDS,
        help="how often to check the files for a renewed certificate (default 30)",
    )
    s3 = p.add_argument_group("object storage (Image.S3Object)")
    s3.add_argument("--s3-endpoint", help="S3-compatible endpoint URL")
    s3.add_argument("--s3-region", default="us-east-1", help="signing region (default us-east-1)")
    s3.add_argument(
        "--s3-secret",
        help="Secret (in the gateway's namespace) with accessKeyId and secretAccessKey",
    )
    s3.add_argument(
        "--s3-namespace-secret",
        metavar="NAME",
        help="Secret of this name in a model's namespace: that namespace's own S3 credentials",
    )
    s3.add_argument(
        "--s3-allow",
        action="append",
        default=[],
        metavar="NAMESPACE=BUCKET[/PREFIX]",
        help="objects the models of NAMESPACE may be given (repeatable; none by default)",
    )
    t = p.add_argument_group("limits")
    t.add_argument(
        "--request-deadline",
        type=float,
        default=dataplane.DEFAULT_DEADLINE,
        help="seconds a detect call may take end to end (default 30)",
    )
    t.add_argument(
        "--max-body",
        type=int,
        default=server.DEFAULT_MAX_BODY,
        help="largest request body in bytes (default 6 MiB)",
    )
    t.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        help="seconds to receive a request body (default 30)",
    )
    t.add_argument(
        "--header-timeout",
        type=float,
        default=server.DEFAULT_HEADER_TIMEOUT,
        help="seconds a request line and headers may take from their first byte (default 10)",
    )
    t.add_argument(
        "--max-connections",
        type=int,
        default=server.DEFAULT_MAX_CONNECTIONS,
        help="open client connections; a new one beyond is closed (default 4096)",
    )
    t.add_argument(
        "--unit-concurrency",
        type=int,
        default=routing.DEFAULT_UNIT_CONCURRENCY,
        help="requests in flight per unit (default 8)",
    )
    t.add_argument(
        "--zone-slack",
        type=int,
        default=routing.DEFAULT_ZONE_SLACK,
        help="in-flight requests a same-zone unit may carry beyond others before spilling (1)",
    )
    t.add_argument(
        "--eject-seconds",
        type=float,
        default=routing.DEFAULT_EJECT_SECONDS,
        help="seconds a unit that did not answer is avoided (default 5)",
    )
    t.add_argument(
        "--burst-seconds",
        type=float,
        default=1.0,
        help="token bucket depth in seconds of the TPS limit (default 1)",
    )
    t.add_argument(
        "--hold-queue-size",
        type=int,
        default=hold.DEFAULT_SIZE,
        help="calls per model held while it scales from zero; 0 holds none (default 64)",
    )
    t.add_argument(
        "--hold-timeout-seconds",
        type=float,
        default=hold.DEFAULT_TIMEOUT,
        help="seconds a held call waits for the model's first unit (default 45)",
    )
    t.add_argument(
        "--max-skew",
        type=float,
        default=verification.DEFAULT_MAX_SKEW,
        help="accepted clock difference of signed requests, seconds (default 300)",
    )
    g = p.add_argument_group("shutdown")
    g.add_argument(
        "--shutdown-delay",
        type=float,
        default=0.0,
        help="seconds /readyz fails before the listener closes (default 0)",
    )
    g.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds requests in progress get to finish (default 30)",
    )
    options.add_logging(p)
    p.add_argument(
        "--access-log", action="store_true", help="log one line per request (no headers, no bodies)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser()
    settings = options.parse(arguments, argv)
    if (settings.tls_cert is None) != (settings.tls_key is None):
        arguments.error("--tls-cert and --tls-key go together")
    logs.configure(level=settings.log_level, format=settings.log_format)
    try:
        return asyncio.run(_serve(settings))
    except directory.DirectoryError as exc:
        log.error("%s", exc)
        return 2


async def _serve(options: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    gateway, closing = await build(options)
    try:
        await gateway.start()
        await stop.wait()
        await shutdown(gateway)
    finally:
        for close in closing:
            await close()
    return 0


async def shutdown(gateway: server.Gateway) -> None:
    """Graceful stop: held calls are answered at once with a retry hint (another replica
    may already serve the model), calls in progress finish (:meth:`server.Gateway.stop`)."""
    gateway.plane.hold.close()
    await gateway.stop()


Closer = Callable[[], Awaitable[None]]


async def build(
    options: argparse.Namespace,
    *,
    transport: upstream.Transport | None = None,
    tokens: auth.TokenReviewer | None = None,
    activate: hold.Activate | None = None,
) -> tuple[server.Gateway, list[Closer]]:
    """Wire a gateway from parsed options; the second value lists what to close at exit.

    ``transport``, ``tokens`` and ``activate`` replace the gRPC transport to units,
    the Kubernetes token reviewer and the activation signal (tests; a directory
    file has no operator to activate, so nothing is held without one).
    """
    closing: list[Closer] = []
    meters = metrics.Metrics()
    zone = options.zone or ""
    source: catalog.Source
    if options.kubernetes:
        from kiu.gateway import kube  # only with --kubernetes: kiu.k8s is not loaded otherwise

        connection = await kube.connect(kubeconfig=options.kubeconfig)
        closing.append(connection.close)
        zone = zone or await connection.own_zone()
        watched = connection.source(
            namespaces=options.namespaces,
            gateway_namespace=options.gateway_namespace,
            gateway_service=options.gateway_service,
            credentials_namespace=options.credentials_namespace or options.gateway_namespace,
            access_key_secrets=None if options.discover_access_keys else options.access_key_secrets,
            s3_secret=options.s3_secret,
            s3_namespace_secret=options.s3_namespace_secret,
        )
        source, activate = watched, activate or watched.activate
        tokens = tokens or connection.tokens()
    else:
        static = directory.Directory(options.directory)
        static.load()
        source = static
    units = transport or upstream.TritonTransport()
    table = catalog.Catalog(
        pools=lambda: routing.Pool(
            transport=units,
            zone=zone,
            unit_concurrency=options.unit_concurrency,
            eject_seconds=options.eject_seconds,
            zone_slack=options.zone_slack,
            failed=meters.unit_failed,
        ),
        meters=meters,
        burst_seconds=options.burst_seconds,
    )
    store = None
    if options.s3_endpoint:
        store = objects.ObjectStore(
            endpoint=options.s3_endpoint,
            credentials=table.s3_credentials_for,
            region=options.s3_region,
            allowed=grants.Grants.parse(options.s3_allow),
        )
    authenticator = auth.Authenticator(
        keys=table.access_key,
        tokens=tokens,
        allow_anonymous=options.allow_anonymous,
        max_skew=options.max_skew,
    )
    plane = dataplane.Dataplane(
        catalog=table,
        source=source,
        authenticator=authenticator,
        meters=meters,
        objects=store,
        hold_queue=hold.Hold(
            meters=meters,
            activate=activate,
            size=options.hold_queue_size,
            timeout=options.hold_timeout_seconds,
        ),
        deadline=options.request_deadline,
    )
    context = None
    if options.tls_cert is not None:
        certificate = tls.Certificate(options.tls_cert, options.tls_key)
        context = certificate.context
        following = asyncio.create_task(certificate.follow(options.tls_reload_seconds))

        async def stop_following() -> None:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following

        closing.append(stop_following)
    exchange = None
    if options.exchange_period > 0:
        exchange = peers.Peers(
            table=table,
            meters=meters,
            port=options.internal_port,
            static=options.peers,
            own_host=os.environ.get("POD_IP"),
            period=options.exchange_period,
        )
    settings = server.Settings(
        host=options.host,
        port=options.port,
        internal_port=options.internal_port,
        max_body=options.max_body,
        read_timeout=options.read_timeout,
        header_timeout=options.header_timeout,
        max_connections=options.max_connections,
        shutdown_delay=options.shutdown_delay,
        shutdown_timeout=options.shutdown_timeout,
        access_log=options.access_log,
        tls=context,
    )
    gateway = server.Gateway(
        plane=plane,
        source=source,
        meters=meters,
        settings=settings,
        objects=store,
        exchange=exchange,
    )
    log.info(
        "zone %r; %s",
        zone,
        "kubernetes" if options.kubernetes else f"directory {options.directory}",
    )
    return gateway, closing
