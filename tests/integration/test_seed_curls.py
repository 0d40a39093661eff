"""Every curl on the seed page works as written, pointed at passgate (and a fake Mistral)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

SEED_URL = "http://0.0.0.0:4000"

# Copied verbatim from the seed page (Quick Start, Example 1, Example 2).
QUICK_START_OCR = """curl -L -X POST 'http://0.0.0.0:4000/mistral/v1/ocr' \\
-H 'Content-Type: application/json' \\
-H 'Authorization: Bearer sk-1234' \\
-d '{
    "model": "mistral-ocr-latest",
    "document": {
        "type": "image_url",
        "image_url": "https://raw.githubusercontent.com/mistralai/cookbook/refs/heads/main/mistral/ocr/receipt.png"
    }

}'"""

EXAMPLE_1_OCR = """curl -L -X POST 'http://0.0.0.0:4000/mistral/v1/ocr' \\
-H 'Content-Type: application/json' \\
-H 'Authorization: Bearer $LITELLM_API_KEY' \\
-d '{
    "model": "mistral-ocr-latest",
    "document": {
        "type": "image_url",
        "image_url": "https://raw.githubusercontent.com/mistralai/cookbook/refs/heads/main/mistral/ocr/receipt.png"
    }
}'"""

EXAMPLE_2_CHAT = """curl -L -X POST 'http://0.0.0.0:4000/mistral/v1/chat/completions' \\
-H 'Content-Type: application/json' \\
-H 'Authorization: Bearer $LITELLM_VIRTUAL_KEY' \\
-d '{
    "messages": [
        {
            "role": "user",
            "content": "I am going to Paris, what should I see?"
        }
    ],
    "max_tokens": 2048,
    "temperature": 0.8,
    "top_p": 0.1,
    "model": "mistral-large-latest",
}'"""


def _body_of(command: str) -> bytes:
    return command.split("-d '", 1)[1].rsplit("'", 1)[0].encode()


def run_curl(command: str, gateway: GatewayProcess) -> tuple[int, bytes]:
    """Run a seed curl through bash, as a user would, against the test gateway."""
    command = command.replace(SEED_URL, gateway.url)
    command = command.replace("curl ", "curl -sS -o /dev/stdout -w '\\n%{http_code}' ", 1)
    done = subprocess.run(["bash", "-c", command], capture_output=True, timeout=30, check=True)
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


@pytest.fixture(scope="module")
def open_gateway(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> GatewayProcess:
    """The seed's Quick Start environment: only MISTRAL_API_KEY (and a base for the fake)."""
    return start_gateway({"MISTRAL_API_KEY": PROVIDER_KEY, "MISTRAL_API_BASE": fake_upstream.url})


@pytest.mark.parametrize("command", [QUICK_START_OCR, EXAMPLE_1_OCR], ids=["quick-start", "ex1"])
def test_seed_ocr_curl(command: str, upstream: FakeMistral, open_gateway: GatewayProcess) -> None:
    canned = b'{"pages": [], "model": "mistral-ocr-latest", "usage_info": {"pages_processed": 1}}'
    upstream.set_response("/v1/ocr", canned, headers=[("content-type", "application/json")])
    status, body = run_curl(command, open_gateway)
    assert status == 200
    assert body == canned
    (record,) = upstream.wait_for_requests(1)
    assert (record.method, record.path) == ("POST", "/v1/ocr")
    assert record.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert record.body == _body_of(command)


def test_seed_chat_curl_with_trailing_comma_is_forwarded_unchanged(
    upstream: FakeMistral, open_gateway: GatewayProcess
) -> None:
    status, body = run_curl(EXAMPLE_2_CHAT, open_gateway)
    (record,) = upstream.wait_for_requests(1)
    assert record.path == "/v1/chat/completions"
    assert record.body == _body_of(EXAMPLE_2_CHAT)
    assert record.header("authorization") == f"Bearer {PROVIDER_KEY}"
    # The body is not valid JSON (trailing comma): the upstream's own error comes back as is.
    assert status == 422
    assert "detail" in json.loads(body)
