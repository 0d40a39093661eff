"""The two reference apps of ``bench.floor``: what the server layer and the upstream client
cost with none of passgate's own work on top.

- ``echo_app``: reads the request, answers the fixed chat completion itself (no upstream).
  Its CPU per call is uvicorn's (protocol, ASGI, the two socket calls) and nothing else.
- ``relay_app``: reads the request and forwards it through passgate's upstream client
  (``passgate.proxy.upstream``, the same pool and framing) to ``MISTRAL_API_BASE``, then
  sends the answer back whole. No auth, no metering, no observers, no watch on the call.

Both run under ``passgate.runtime.server.serve``: the same uvicorn options, loop and protocol as
passgate's workers. They are measuring instruments, not gateways: nothing here checks a
key or a path, so they only ever listen on 127.0.0.1 during a bench run.

    python -m bench.floor_apps echo|relay --port P [--workers 2]
"""

import argparse
import json
import os
import sys

from bench.payloads import CHAT_RESPONSE
from passgate.providers.registry import enabled
from passgate.proxy.headers import client_response_headers, upstream_request_headers
from passgate.proxy.upstream import Upstream, UpstreamOptions
from passgate.runtime.server import serve
from passgate.settings_env import load_settings
from passgate.types import ASGIApp, Receive, Scope, Send

_ANSWER = json.dumps(CHAT_RESPONSE).encode()
_ANSWER_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_ANSWER)).encode()),
]


async def _read_body(receive: Receive) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _lifespan(receive: Receive, send: Send, upstream: Upstream | None) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if upstream is not None:
                await upstream.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if upstream is not None:
                await upstream.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


def echo_app() -> ASGIApp:
    """The server-layer floor: every request gets the fixed chat completion."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, None)
            return
        await _read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": _ANSWER_HEADERS})
        await send({"type": "http.response.body", "body": _ANSWER, "more_body": False})

    return app


def relay_app() -> ASGIApp:
    """The server + client floor: every request forwarded as is to ``MISTRAL_API_BASE``."""
    settings = load_settings(None)
    provider = enabled(settings.upstreams())[0]
    upstream = Upstream(UpstreamOptions.from_settings(settings))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, upstream)
            return
        body = await _read_body(receive)
        path: bytes = scope["raw_path"]
        target = (provider.base_path + path.removeprefix(b"/mistral")).decode("latin-1")
        headers = upstream_request_headers(scope["headers"], provider.credential)
        response = await upstream.request(provider.origin, scope["method"], target, headers, body)
        try:
            answer = await response.read()
        finally:
            response.close()
        out, *_ = client_response_headers(response.raw_headers, b"floor")
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": answer, "more_body": False})

    return app


def main(argv: list[str] | None = None) -> int:
    """Serve one of the reference apps on 127.0.0.1."""
    parser = argparse.ArgumentParser(description="bench.floor's reference apps")
    parser.add_argument("app", choices=("echo", "relay"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("MISTRAL_API_KEY", "bench")
    serve(f"bench.floor_apps:{args.app}_app", "127.0.0.1", args.port, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
