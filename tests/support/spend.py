"""Admin calls and spend rows of a running gateway, as end-to-end tests read them."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import orjson

from tests.conftest import MASTER_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import request

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
WAIT = 10.0


def admin(gateway: GatewayProcess, method: str, path: str, body: Any = None) -> Any:
    """An admin call with the master key; its JSON answer (which must be a 200)."""
    headers = {**ADMIN, "Content-Type": "application/json"}
    data = None if body is None else orjson.dumps(body)
    reply = request(gateway.url, method, path, data, headers)
    assert reply.status == 200, reply.body
    return reply.json()


def spend_row(gateway: GatewayProcess, rid: str) -> dict[str, Any]:
    """The one spend row of request id ``rid``, once the writer has stored it."""
    deadline = time.monotonic() + WAIT
    while True:
        page = admin(gateway, "GET", "/spend/logs?" + urlencode({"request_id": rid}))
        assert page["total"] <= 1, page
        if page["total"] == 1:
            row: dict[str, Any] = page["data"][0]
            return row
        assert time.monotonic() < deadline, f"no spend row for {rid}"
        time.sleep(0.02)
