"""Past its cap of pass-through calls in flight, a worker answers new ones 503 at once.

Streams held open by the fake upstream fill a cap of two; the third call is shed, while
health, metrics and admin routes keep answering, and the held calls finish normally.
"""

from __future__ import annotations

import threading
import time

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.http import Reply, request
from tests.support.raw_client import metric

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
STREAM = b'{"model":"mistral-small-latest","messages":[],"stream":true}'
CHAT = b'{"model":"mistral-small-latest","messages":[{"role":"user","content":"hi"}]}'
CAP = 2


def _wait_holding(up: FakeMistral, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(record.holding.is_set() for record in up.requests) < count:
        assert time.monotonic() < deadline, "the streams never reached their held event"
        time.sleep(0.01)


def test_calls_past_the_cap_are_shed_and_other_routes_answer(
    upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(
        {
            "MISTRAL_API_BASE": upstream.url,
            "MISTRAL_API_KEY": PROVIDER_KEY,
            "PASSGATE_MASTER_KEY": MASTER_KEY,
            "PASSGATE_MAX_CALLS_IN_FLIGHT": str(CAP),
        }
    )
    upstream.configure(hold_last_event=True)
    held: list[Reply] = []

    def stream() -> None:
        held.append(request(gw.url, "POST", "/mistral/v1/chat/completions", STREAM, AUTH))

    threads = [threading.Thread(target=stream) for _ in range(CAP)]
    for thread in threads:
        thread.start()
    try:
        _wait_holding(upstream, CAP)
        shed = request(
            gw.url,
            "POST",
            "/mistral/v1/chat/completions",
            CHAT,
            {**AUTH, "X-Request-Id": "shed-1"},
        )
        assert shed.status == 503
        assert shed.error["code"] == "overloaded"
        assert shed.headers["retry-after"] == "1"
        assert shed.headers["x-request-id"] == "shed-1"
        assert len(upstream.requests) == CAP  # never forwarded
        assert request(gw.url, "GET", "/health").status == 200
        assert request(gw.url, "GET", "/key/list", None, AUTH).status == 200
        scrape = request(gw.url, "GET", "/metrics")
        assert scrape.status == 200
        assert metric(scrape.body.decode(), "passgate_overloaded_total") == 1
    finally:
        upstream.release_last_event()
        for thread in threads:
            thread.join(10)
    assert [reply.status for reply in held] == [200] * CAP
    assert all(reply.body.endswith(b"data: [DONE]\n\n") for reply in held)
    # the cap counts calls in flight, not calls made: once they end, calls pass again
    again = request(gw.url, "POST", "/mistral/v1/chat/completions", CHAT, AUTH)
    assert again.status == 200
