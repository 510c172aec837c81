"""The floor of the gateway's design: aiohttp's server and the gRPC unit client, nothing else.

One aiohttp process: ``GET /healthz`` answers ``ok``; a POST to the native REST
path of a version named ``read`` reads its body and answers a fixed JSON
document (what a throttled call cannot avoid); a POST to any other version does
that and also sends a fixed small image to a unit with the gateway's own unit
client (:class:`kiu.gateway.upstream.TritonChannel`). No signature, no JSON
parse, no budget, no routing: what a POST costs here is what a call through this
design costs at the least, so its multiple of ``/healthz`` says how far the
gateway's own steps can still go.

    python -m bench.floor --port N --unit 127.0.0.1:M --model trivial
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from bench import gateway
from kiu.gateway.upstream import Endpoint, TritonChannel


def app(channel: TritonChannel, *, model: str, image: bytes) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def detect(request: web.Request) -> web.Response:
        await request.read()
        if request.match_info["name"] == "read":
            return web.json_response({"labels": 0})
        answer = await channel.infer(model=model, image=image, seconds=30)
        return web.json_response({"labels": len(answer.labels)})

    application = web.Application()
    application.router.add_get("/healthz", healthz)
    application.router.add_post("/v1/namespaces/{namespace}/projectversions/{name}:detect", detect)
    return application


async def serve(port: int, unit: Endpoint, model: str) -> None:
    channel = TritonChannel(unit)
    runner = web.AppRunner(app(channel, model=model, image=gateway.small_png()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unit", required=True, help="host:port of a KServe v2 gRPC unit")
    parser.add_argument("--model", default="trivial")
    args = parser.parse_args()
    host, _, port = args.unit.rpartition(":")
    asyncio.run(serve(args.port, Endpoint(host, int(port)), args.model))


if __name__ == "__main__":
    main()
