"""Demand from the gateways' /metrics: parsing, rates, resets, replicas coming and going."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from kiu.controller import demand
from kiu.k8s import pods

PAGE = """\
# HELP kiu_gateway_demand_total Calls received per model, admitted or throttled.
# TYPE kiu_gateway_demand_total counter
kiu_gateway_demand_total{{namespace="retail",projectversion="shoes"}} {shoes}
kiu_gateway_demand_total{{namespace="retail",projectversion="hats"}} {hats}
# HELP kiu_gateway_requests_total Requests.
# TYPE kiu_gateway_requests_total counter
kiu_gateway_requests_total{{namespace="retail",projectversion="shoes",outcome="success"}} 99
"""


def test_parse_reads_only_the_demand_counter() -> None:
    counters = demand.parse(PAGE.format(shoes=12, hats=3.5))
    assert counters == {(("retail", "shoes"), ""): 12.0, (("retail", "hats"), ""): 3.5}


class Gateways:
    """HTTP servers standing in for gateway pods, each on its own loopback address and the
    same port, as pods are; `pages[name]` is what each serves (None: it fails)."""

    IPS = {"gw-1": "127.0.0.2", "gw-2": "127.0.0.3"}

    def __init__(self) -> None:
        self.pages: dict[str, str | None] = {}
        self.port = 0


@pytest.fixture
async def gateways(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateways]:
    state = Gateways()
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        state.port = probe.getsockname()[1]
    runners = []
    for name, ip in Gateways.IPS.items():

        async def metrics(_: web.Request, name: str = name) -> web.Response:
            page = state.pages.get(name)
            if page is None:
                return web.Response(status=503)
            return web.Response(text=page)

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, ip, state.port).start()
        runners.append(runner)

    async def running(_: object, **__: object) -> list[pods.Address]:
        return [pods.Address(namespace="kiu", name=n, ip=Gateways.IPS[n]) for n in state.pages]

    monkeypatch.setattr(pods, "running", running)
    yield state
    for runner in runners:
        await runner.cleanup()


async def test_rates_from_counter_deltas(gateways: Gateways) -> None:
    async with aiohttp.ClientSession() as session:
        scraper = demand.GatewayScraper(
            api=None,  # type: ignore[arg-type]  # pods.running is replaced
            session=session,
            selector="app=gateway",
            port=gateways.port,
        )
        gateways.pages = {
            "gw-1": PAGE.format(shoes=100, hats=0),
            "gw-2": PAGE.format(shoes=50, hats=0),
        }
        assert await _sample(scraper, now=0.0) is None  # nothing to compare with yet
        assert scraper.window is None

        gateways.pages = {
            "gw-1": PAGE.format(shoes=150, hats=10),
            "gw-2": PAGE.format(shoes=100, hats=0),
        }
        assert await _sample(scraper, now=10.0) == {
            ("retail", "shoes"): 10.0,
            ("retail", "hats"): 1.0,
        }
        assert scraper.window == 10.0  # what the scaling policy weighs the sample by

        # gw-2 restarted (its counter went down: its new value counts); gw-1 did not
        # answer and is left out of this sample.
        gateways.pages = {"gw-1": None, "gw-2": PAGE.format(shoes=20, hats=0)}
        assert await _sample(scraper, now=20.0) == {
            ("retail", "shoes"): 2.0,
            ("retail", "hats"): 0.0,
        }

        # gw-1 answers again: its increase is spread over its own 20 s since it last did,
        # not counted as 10 s worth (no spike). gw-2 is gone and counts nothing.
        gateways.pages = {"gw-1": PAGE.format(shoes=160, hats=10)}
        assert await _sample(scraper, now=30.0) == {
            ("retail", "shoes"): 0.5,
            ("retail", "hats"): 0.0,
        }

        # A replica that was not there before is new: its whole count is demand since.
        gateways.pages = {
            "gw-1": PAGE.format(shoes=170, hats=10),
            "gw-2": PAGE.format(shoes=5, hats=5),
        }
        assert await _sample(scraper, now=40.0) == {
            ("retail", "shoes"): 1.5,
            ("retail", "hats"): 0.5,
        }

        # Nobody answers: unknown, not zero.
        gateways.pages = {"gw-1": None, "gw-2": None}
        assert await _sample(scraper, now=50.0) is None


async def test_a_replica_first_seen_failing_only_sets_a_baseline(gateways: Gateways) -> None:
    async with aiohttp.ClientSession() as session:
        scraper = demand.GatewayScraper(
            api=None,  # type: ignore[arg-type]  # pods.running is replaced
            session=session,
            selector="app=gateway",
            port=gateways.port,
        )
        gateways.pages = {"gw-1": PAGE.format(shoes=0, hats=0), "gw-2": None}
        assert await _sample(scraper, now=0.0) is None
        gateways.pages["gw-1"] = PAGE.format(shoes=10, hats=0)
        # gw-2 was listed but never answered: its counters are not all new demand.
        gateways.pages["gw-2"] = PAGE.format(shoes=100_000, hats=0)
        assert await _sample(scraper, now=10.0) == {
            ("retail", "shoes"): 1.0,
            ("retail", "hats"): 0.0,
        }


async def _sample(
    scraper: demand.GatewayScraper, *, now: float
) -> dict[tuple[str, str], float] | None:
    sample = await scraper.sample(now=now)
    return None if sample is None else dict(sample)


async def test_prometheus_source_reads_the_rate_query() -> None:
    queries: list[str] = []

    async def query(request: web.Request) -> web.Response:
        queries.append(request.query["query"])
        return web.json_response(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [
                        {
                            "metric": {"namespace": "retail", "projectversion": "shoes"},
                            "value": [1.0, "4.5"],
                        },
                        {"metric": {"namespace": "retail"}, "value": [1.0, "9"]},
                        {
                            "metric": {"namespace": "retail", "projectversion": "hats"},
                            "value": [1.0, "NaN"],
                        },
                    ],
                },
            }
        )

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            source = demand.PrometheusSource(session=session, url=f"http://127.0.0.1:{port}/")
            assert await source.sample(now=0.0) == {("retail", "shoes"): 4.5}
            assert queries == [demand.PROMQL]
            assert source.window == 60.0  # the range of the query's rate
            unreachable = demand.PrometheusSource(session=session, url="http://127.0.0.1:1")
            assert await unreachable.sample(now=0.0) is None
    finally:
        await runner.cleanup()
