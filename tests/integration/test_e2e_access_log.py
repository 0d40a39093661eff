"""The access log of a real ``passgate`` server: one line per call, whoever writes it.

With accounting on, the workers send each call's record to the instance's spend-writer
process, which stores the spend row and writes the JSON access line; with accounting off
there is no such process and each worker writes its own lines. These tests count the
lines in the server's output: a call logged twice (by a worker and by the process) or not
at all fails them, either way, with two workers.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.integration.test_e2e_spend import spend_env
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.http import request

CHAT = "/mistral/v1/chat/completions"
CALLS = 12


def chat(gateway: GatewayProcess, request_id: str, token: str = MASTER_KEY) -> int:
    body = orjson.dumps({"model": "mistral-small-latest", "messages": []})
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "x-request-id": request_id,
    }
    return request(gateway.url, "POST", CHAT, body, headers).status


def access_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for text in output.splitlines():
        if text.startswith("{") and '"passgate.access"' in text:
            line = orjson.loads(text)
            if line.get("logger") == "passgate.access":
                lines.append(line)
    return lines


def run_calls(gateway: GatewayProcess) -> tuple[list[str], str]:
    """CALLS good calls and one with a wrong key; the ids sent, and the output once stopped."""
    ids = [f"acc-{uuid.uuid4().hex[:12]}" for _ in range(CALLS)]
    assert [chat(gateway, rid) for rid in ids] == [200] * CALLS
    refused = f"acc-{uuid.uuid4().hex[:12]}"
    assert chat(gateway, refused, token="sk-wrong-key-123456") == 401
    gateway.stop()  # SIGTERM: every line the workers sent is written before the exit
    return [*ids, refused], gateway.logs()


@pytest.mark.parametrize("accounting", ["true", "false"])
def test_every_call_has_exactly_one_access_line(
    upstream: FakeMistral, start_gateway: GatewayFactory, accounting: str
) -> None:
    gateway = start_gateway(spend_env(upstream, PASSGATE_ACCOUNTING=accounting), workers=2)
    ids, output = run_calls(gateway)
    lines = {line["request_id"]: line for line in access_lines(output)}
    assert sorted(lines) == sorted(ids), "a call logged twice or not at all"
    assert len(access_lines(output)) == len(ids)
    good = lines[ids[0]]
    assert (good["status"], good["method"], good["route"]) == (200, "POST", CHAT)
    assert good["upstream_path"] == "/v1/chat/completions"
    assert good["model"] == "mistral-small-latest"
    assert good["key_alias"] is None  # the master key has no alias
    assert good["bytes_in"] > 0 and good["bytes_out"] > 0
    assert good["latency_ms"] >= good["ttfb_ms"] > 0
    assert good["time"].endswith("Z")
    if accounting == "true":
        assert good["prompt_tokens"] > 0 and good["cost"] > 0
    else:
        assert good["prompt_tokens"] is None and good["cost"] is None
    refused = lines[ids[-1]]
    assert refused["status"] == 401 and refused["error"].startswith("Invalid API key")
    assert MASTER_KEY not in output and PROVIDER_KEY not in output


def test_no_access_line_when_the_log_is_off(
    upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(spend_env(upstream, PASSGATE_LOG_REQUESTS="false"), workers=2)
    ids, output = run_calls(gateway)
    assert access_lines(output) == []
    assert ids[0] not in output
