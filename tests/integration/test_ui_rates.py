"""A key's rate-limit state on its detail page, against a real ``passgate`` process: the
requests, tokens and parallel slots the limits count, from each kind of counter store."""

from __future__ import annotations

import html
import math
import re
import threading
import time
from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.integration.test_ui_security import CHAT, call, env, new_key, short_id
from tests.support.fake_mistral import FakeMistral
from tests.support.fake_mistral_payloads import TOTAL_TOKENS
from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.services import REDIS_URL, require_redis
from tests.support.ui_client import UiClient

CALLS = 3
RPM, TPM, PARALLEL = 5, 100_000, 2
ROW = re.compile(r'<dd id="(rate-[a-z]+)">([^<]*)</dd>')


@pytest.fixture(scope="module", params=["worker", "instance", "redis"])
def gw(
    request: pytest.FixtureRequest, fake_upstream: FakeMistral, start_gateway: GatewayFactory
) -> GatewayProcess:
    """One worker (its own counters), two workers (the limits process's), or Redis."""
    if request.param == "redis":
        require_redis()
        return start_gateway(env(fake_upstream, REDIS_URL=REDIS_URL))
    return start_gateway(env(fake_upstream), workers=2 if request.param == "instance" else 1)


@pytest.fixture
def admin(gw: GatewayProcess) -> Iterator[UiClient]:
    client = UiClient(gw.url)
    assert client.login(MASTER_KEY).status == 303
    yield client


def rates(client: UiClient, token: str) -> dict[str, str]:
    """The rate rows of the key's detail page: row id -> its text."""
    page = client.get(f"/ui/keys/{short_id(token)}")
    assert page.status == 200
    return {name: html.unescape(text) for name, text in ROW.findall(page.text)}


def settled(client: UiClient, token: str, want: dict[str, str]) -> dict[str, str]:
    """The page's rows once they match ``want``, or as they are after a bounded wait: a
    call settles just after its last byte reached the client."""
    deadline = time.monotonic() + 10
    while True:
        seen = rates(client, token)
        if all(seen.get(name) == text for name, text in want.items()):
            return seen
        if time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def test_the_detail_page_shows_the_counters_the_limits_use(
    gw: GatewayProcess, admin: UiClient, fake_upstream: FakeMistral
) -> None:
    key = new_key(gw, rpm_limit=RPM, tpm_limit=TPM, max_parallel_requests=PARALLEL)
    token, secret = key["token"], key["key"]
    assert rates(admin, token) == {
        "rate-rpm": f"0 of {RPM} in the last 60 s",
        "rate-tpm": f"0 of {TPM} this minute",
        "rate-parallel": f"0 of {PARALLEL} in flight now",
    }

    window = math.floor(time.time() / 60)
    assert [call(gw, secret) for _ in range(CALLS)] == [200] * CALLS
    same_window = math.floor(time.time() / 60) == window
    fake_upstream.configure(hold_last_event=True)
    held = [r for r in fake_upstream.requests if r.holding.is_set()]
    stream = orjson.dumps({"model": "mistral-small-latest", "stream": True, "messages": []})
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    statuses: list[int] = []
    streaming = threading.Thread(
        target=lambda: statuses.append(request(gw.url, "POST", CHAT, stream, headers).status)
    )
    streaming.start()
    try:
        while len([r for r in fake_upstream.requests if r.holding.is_set()]) <= len(held):
            time.sleep(0.01)
        seen = settled(
            admin,
            token,
            {
                "rate-rpm": f"{CALLS + 1} of {RPM} in the last 60 s",
                "rate-parallel": f"1 of {PARALLEL} in flight now",
            },
        )
        assert seen["rate-rpm"] == f"{CALLS + 1} of {RPM} in the last 60 s"
        assert seen["rate-parallel"] == f"1 of {PARALLEL} in flight now"
        if same_window:
            assert seen["rate-tpm"] == f"{CALLS * TOTAL_TOKENS} of {TPM} this minute"
    finally:
        fake_upstream.configure(hold_last_event=False)
        fake_upstream.release_last_event()
        streaming.join(10)
    assert statuses == [200]
    seen = settled(admin, token, {"rate-parallel": f"0 of {PARALLEL} in flight now"})
    assert seen["rate-parallel"] == f"0 of {PARALLEL} in flight now"
    assert seen["rate-rpm"] == f"{CALLS + 1} of {RPM} in the last 60 s"


def test_a_key_with_one_limit_shows_only_that_one(gw: GatewayProcess, admin: UiClient) -> None:
    key = new_key(gw, rpm_limit=RPM)
    assert call(gw, key["key"]) == 200
    assert rates(admin, key["token"]) == {"rate-rpm": f"1 of {RPM} in the last 60 s"}


def test_a_key_without_limits_says_so(gw: GatewayProcess, admin: UiClient) -> None:
    key = new_key(gw)
    assert call(gw, key["key"]) == 200
    page = admin.get(f"/ui/keys/{short_id(key['token'])}")
    assert page.status == 200
    assert "This key has no rate limits." in page.text
    assert not ROW.findall(page.text)
