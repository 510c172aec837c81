"""The HTTP servers: routes, the cross-cutting middleware, start-up and graceful shutdown.

Routes of the API port (``port``, 8080), what clients reach::

    POST /                                                   AWS JSON 1.1 (awsjson)
    POST /v1/namespaces/{namespace}/projectversions/{name}:detect   native REST (rest)

Routes of the internal port (``internal_port``, 9090), for probes, Prometheus, the
operator and the other gateway replicas only::

    GET  /healthz    the process is alive
    GET  /readyz     the catalog is loaded and the gateway is not shutting down
    GET  /metrics    Prometheus text format (``?name[]=`` restricts it)
    GET  /peers/v1/offered   the calls/s each model receives here (kiu.gateway.peers)

Every response carries ``x-amzn-RequestId``. An exception that escapes a handler
becomes InternalServerError (logged without the request body); an unknown path
or method answers in the same error shape.

Slow and numerous clients: a request's line and headers must arrive within
``header_timeout`` seconds of its first byte, its body within ``read_timeout``
(RequestTimeoutException, then the connection is closed), and idle keep-alive
connections close after ``keepalive_timeout``; so a client sending a byte a
second holds a connection for a bounded time. Beyond ``max_connections`` open
connections a new one is closed at once. A body whose Content-Length exceeds
``max_body`` is refused before any of it is read.

Shutdown (:meth:`Gateway.stop`, on SIGTERM): ``/readyz`` turns 503 at once, so
load balancers stop sending; after ``shutdown_delay`` the listening socket
closes, idle connections are closed, requests in progress run to completion
within ``shutdown_timeout`` (their responses carry ``Connection: close``);
then the exchange, the internal port, channels to units and the source are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from kiu import logs
from kiu.gateway import awsjson, catalog, dataplane, errors, metrics, objects, peers, rest, wire

log = logging.getLogger(__name__)

#: A 4 MB image in base64 is 5.6 MB; the rest of the JSON document is small.
DEFAULT_MAX_BODY = 6 * 1024 * 1024
#: Seconds a request line and its headers may take to arrive, from their first byte.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Open client connections; a new one beyond this is closed at once.
DEFAULT_MAX_CONNECTIONS = 4096


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    internal_port: int = 9090
    max_body: int = DEFAULT_MAX_BODY
    read_timeout: float = 30.0
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keepalive_timeout: float = 75.0
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    shutdown_delay: float = 0.0
    shutdown_timeout: float = 30.0
    access_log: bool = False
    #: Serve HTTPS with this context (:mod:`tls`); None serves plain HTTP.
    tls: ssl.SSLContext | None = None


class Gateway:
    """The gateway process: a source filling the catalog, and the HTTP server over it."""

    def __init__(
        self,
        *,
        plane: dataplane.Dataplane,
        source: catalog.Source,
        meters: metrics.Metrics,
        settings: Settings,
        objects: objects.ObjectStore | None = None,
        exchange: peers.Peers | None = None,
    ) -> None:
        self.plane = plane
        self.catalog = plane.catalog
        self._source = source
        self._metrics = meters
        self._settings = settings
        self._objects = objects
        self._exchange = exchange
        self._exchange_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._internal: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._connections: dict[asyncio.BaseTransport, _Connection] = {}
        self._source_task: asyncio.Task[None] | None = None
        self.draining = False
        self.port = settings.port
        self.internal_port = settings.internal_port

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self._settings.max_body, middlewares=[self._middleware]
        )
        timeout = self._settings.read_timeout
        app.router.add_post("/", awsjson.Api(self.plane, read_timeout=timeout).handle)
        app.router.add_post(rest.PATH, rest.Api(self.plane, read_timeout=timeout).handle)
        return app

    def internal_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_handler)
        if self._exchange is not None:
            app.router.add_get(peers.PATH, self._exchange.handle)
        return app

    async def start(self, *, sync_timeout: float = 60.0) -> None:
        """Fill the catalog, then listen."""
        self._source_task = asyncio.create_task(self._run_source(), name="kiu-gateway-source")
        async with asyncio.timeout(sync_timeout):
            while not self.catalog.synced:
                if self._source_task.done():
                    self._source_task.result()
                    raise RuntimeError("the source stopped before the catalog was filled")
                await asyncio.sleep(0.05)
        settings = self._settings
        self._internal = web.AppRunner(self.internal_app(), access_log=None)
        await self._internal.setup()
        site = web.TCPSite(
            self._internal, settings.host, settings.internal_port, reuse_address=True
        )
        await site.start()
        self.internal_port = self._internal.addresses[0][1]
        if self._exchange is not None:
            self._exchange_task = asyncio.create_task(self._exchange.run(), name="kiu-peers")
        self._runner = web.AppRunner(
            self.app(),
            access_log=log if settings.access_log else None,
            access_log_format='%a "%r" %s %b %Tf request_id=%{x-amzn-RequestId}o',
            keepalive_timeout=settings.keepalive_timeout,
            shutdown_timeout=settings.shutdown_timeout,
        )
        await self._runner.setup()
        handlers = self._runner.server
        assert handlers is not None
        self._listener = await asyncio.get_running_loop().create_server(
            lambda: _Connection(handlers(), self._connections, settings),
            settings.host,
            settings.port,
            reuse_address=True,
            ssl=settings.tls,
        )
        self.port = self._listener.sockets[0].getsockname()[1]
        log.info(
            "gateway listening on %s:%s (internal port %s)",
            settings.host,
            self.port,
            self.internal_port,
        )

    async def stop(self) -> None:
        """Graceful shutdown; no request already accepted is dropped."""
        self.draining = True
        log.info("shutting down: draining for %.1fs", self._settings.shutdown_delay)
        if self._settings.shutdown_delay > 0:
            await asyncio.sleep(self._settings.shutdown_delay)
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._exchange_task is not None:
            self._exchange_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._exchange_task
        if self._internal is not None:
            await self._internal.cleanup()
        if self._source_task is not None:
            self._source_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._source_task
        await self.catalog.close()
        if self._objects is not None:
            await self._objects.close()
        log.info("gateway stopped")

    async def _run_source(self) -> None:
        await self._source.run(self.catalog)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        gauge = self._metrics.http_in_flight
        gauge.inc()
        transport = request.transport
        connection = self._connections.get(transport) if transport is not None else None
        if connection is not None:
            connection.headers_arrived()
        request_id = str(uuid.uuid4())
        token = logs.request_id.set(request_id)  # every line logged about this call carries it
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            response = wire.error_response(errors.UnknownPath())
        except web.HTTPMethodNotAllowed:
            response = wire.error_response(errors.MethodNotAllowed())
        except web.HTTPException as exc:
            response = wire.error_response(errors.InvalidParameter(exc.reason))
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path[:200])
            response = wire.error_response(errors.InternalServerError())
        finally:
            logs.request_id.reset(token)
            gauge.dec()
            if connection is not None:
                connection.answered()
        if not request.content.is_eof():
            response.force_close()  # the rest of an unread body is not worth waiting for
        response.headers[wire.REQUEST_ID] = request_id
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.Response(status=503, text="shutting down\n")
        if not self.catalog.synced:
            return web.Response(status=503, text="catalog not loaded\n")
        return web.Response(text="ok\n")

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        names = request.query.getall("name[]", None)
        body = self._metrics.exposition(names)
        return web.Response(
            body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )


class _Connection(asyncio.Protocol):
    """One client connection: aiohttp's handler, plus the limits aiohttp lacks.

    aiohttp bounds an idle connection (keep-alive) and, through ``read_timeout``
    in the adapters, a body; this bounds the request line and headers, counted
    from their first byte so an idle keep-alive connection is not affected, and
    caps the number of open connections.
    """

    def __init__(
        self,
        handler: asyncio.Protocol,
        registry: dict[asyncio.BaseTransport, _Connection],
        settings: Settings,
    ) -> None:
        self._handler = handler
        self._registry = registry
        self._settings = settings
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if len(self._registry) >= self._settings.max_connections:
            log.warning("refused a connection: %d are open", len(self._registry))
            transport.abort()
            return
        self._transport = transport
        self._registry[transport] = self
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        if not self._in_request and self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(
                self._settings.header_timeout, self._too_slow
            )
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received() if self._transport is not None else None

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return
        self._cancel()
        self._registry.pop(self._transport, None)
        self._handler.connection_lost(exc)

    def headers_arrived(self) -> None:
        self._in_request = True
        self._cancel()

    def answered(self) -> None:
        self._in_request = False

    def _too_slow(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._in_request:
            log.info(
                "closed a connection whose request headers took over %.0fs",
                self._settings.header_timeout,
            )
            self._transport.abort()

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
