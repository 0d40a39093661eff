"""The benchmark's Python upstream: streamed chat (SSE) and a multipart upload sink.

Run as its own process: python -m bench.upstream --port P [--gap-ms 1]
"""

import argparse
import asyncio
import json

from aiohttp import web

from bench.payloads import STREAM_EVENTS, anthropic_events, stream_events

GAP = web.AppKey("gap", float)
EVENTS = web.AppKey("events", list)
MESSAGE_EVENTS = web.AppKey("message_events", list)


async def stream_chat(request: web.Request) -> web.StreamResponse:
    """Send the streamed chat one event per write, `gap` seconds apart."""
    return await _stream(request, request.app[EVENTS])


async def stream_message(request: web.Request) -> web.StreamResponse:
    """Send the streamed Anthropic message one event per write, `gap` seconds apart."""
    return await _stream(request, request.app[MESSAGE_EVENTS])


async def _stream(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    await request.read()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for index, event in enumerate(events):
        await response.write(event)
        if index < len(events) - 1:
            await asyncio.sleep(request.app[GAP])
    await response.write_eof()
    return response


async def upload_sink(request: web.Request) -> web.Response:
    """Read the whole upload in chunks, keep none of it, say how much arrived."""
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
    body = {"id": "file-bench", "object": "file", "bytes": size, "filename": "bench.jsonl"}
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")


async def ready(_: web.Request) -> web.Response:
    """Readiness probe for the benchmark driver."""
    return web.Response(text=f"ok {STREAM_EVENTS}")


def build_app(gap: float) -> web.Application:
    """The upstream application."""
    app = web.Application(client_max_size=1 << 30)
    app[GAP] = gap
    app[EVENTS] = stream_events()
    app[MESSAGE_EVENTS] = anthropic_events()
    app.router.add_post("/v1/chat/completions", stream_chat)
    app.router.add_post("/v1/messages", stream_message)
    app.router.add_post("/v1/files", upload_sink)
    app.router.add_get("/ready", ready)
    return app


def main() -> None:
    """Serve on 127.0.0.1 until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gap-ms", type=float, default=1.0, help="pause between SSE events")
    args = parser.parse_args()
    web.run_app(
        build_app(args.gap_ms / 1000),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        handle_signals=True,
    )


if __name__ == "__main__":
    main()
