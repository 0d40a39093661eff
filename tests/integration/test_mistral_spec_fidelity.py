"""Every operation of Mistral's published OpenAPI spec, direct to Stoplight Prism and via passgate.

Prism (``tests/support/prism.py``) serves the spec fixture as the upstream, validates every
request against it (``--errors``: an invalid request gets 422) and answers with the spec's
static examples. For each operation one valid request is built from the spec
(``tests/support/openapi_calls.py``), sent once to Prism with the provider key and once
through a real gateway at ``/mistral/<path>`` with the master key, and the two answers
must agree: status, content type, body bytes (SSE: event by event) and every header but
the per-response ``Date`` and the hop-by-hop ones, the gateway adding only its documented
headers. A request Prism accepts directly must not be rejected when the gateway forwards it.

Where Prism cannot answer an operation with a mock, the answers are still compared, and the
operation is listed below with the reason; the test fails if such a list goes stale.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fidelity import Answer, Client, differences
from tests.support.gateway import GatewayProcess
from tests.support.openapi_calls import METHODS, SpecCall, spec_calls
from tests.support.prism import PrismMock, load_spec

SPEC_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "mistral" / "openapi.yaml"
SPEC_OPERATIONS = 288  # paths x methods in the fixture; a new fixture states its own count

# Prism answers these requests 422, direct and through the gateway alike: the spec gives a
# streamed call under an SDK alias path ("/x#stream"), but at the HTTP path Prism
# validates against the non-streamed operation, whose schema allows only "stream": false.
REJECTED_BY_PRISM = (
    "POST /v1/conversations#stream",
    "POST /v1/conversations/{conversation_id}#stream",
    "POST /v1/conversations/{conversation_id}/restart#stream",
    "POST /v1/audio/transcriptions#stream",
)
# The spec secures these with an ``x-api-key`` header (DashboardUserContextAuth). The
# gateway takes a caller's ``x-api-key`` as the caller's own credential and sends the
# provider key as ``Authorization: Bearer`` only, so Prism answers 401 to the gateway's
# request while the direct one, with ``x-api-key``, gets the mock.
GATEWAY_SENDS_BEARER = {
    key: (200, 401)
    for key in (
        "GET /v1/users/me",
        "GET /v1/users/me/organizations",
        "GET /v1/users/me/workspaces",
    )
}
# Prism cannot build an SSE body from a schema ("Cannot serialise complex objects as
# text"): it answers 500 to every call that asks for text/event-stream, so these are
# compared on that answer (the event-by-event comparison gets no stream to read).
SSE_NOT_MOCKED = (
    "POST /v1/chat/completions (stream)",
    "POST /v1/fim/completions (stream)",
    "POST /v1/audio/speech (stream)",
    "GET /v1/workflows/executions/{execution_id}/stream",
    "GET /v1/workflows/executions/{execution_id}/logs/stream",
    "GET /v1/workflows/events/stream",
    "GET /v1/workflows/deployments/{name}/logs/stream",
)
# Prism answers 500 when the example it would serve fails the spec's own response schema
# (``--errors`` validates answers too): the request was valid, and the 500 is compared.
# Each entry names what in the published spec makes its example invalid.
_EXAMPLE_INVALID = {
    "createdAt/updatedAt examples are not date-times": (
        "GET /v2/prompts",
        "POST /v2/prompts",
        "GET /v2/prompts/{prompt_id}",
        "PATCH /v2/prompts/{prompt_id}",
        "GET /v2/prompts/{prompt_id}/versions",
        "GET /v2/prompts/{prompt_id}/versions/{version}",
        "PATCH /v2/prompts/{prompt_id}/versions/{version}",
    ),
    "skill asset examples match no oneOf branch; createdAt is no date-time": (
        "GET /v2/skills",
        "POST /v2/skills",
        "GET /v2/skills/{skill_id}",
        "PATCH /v2/skills/{skill_id}",
        "GET /v2/skills/{skill_id}/versions",
        "GET /v2/skills/{skill_id}/versions/{version}",
        "PATCH /v2/skills/{skill_id}/versions/{version}",
    ),
    "the model list example is an array where its schema is an object; the model card example "
    "matches no single oneOf branch": (
        "GET /v1/models",
        "GET /v1/models/{model_id}",
    ),
    "file examples give `bytes` as a non-integer and ids that are no UUIDs": (
        "GET /v1/files",
        "POST /v1/files",
        "GET /v1/files/{file_id}",
    ),
    "the schema requires a field the example lacks (chat, FIM, agents: `data`, which the "
    "schema never defines; embeddings: `id`; OCR: page dimensions)": (
        "POST /v1/chat/completions",
        "POST /v1/fim/completions",
        "POST /v1/agents/completions",
        "POST /v1/embeddings",
        "POST /v1/ocr",
    ),
    "trace and span id examples fail their hex patterns": (
        "POST /v1/observability/traces/search",
        "POST /v1/observability/spans/search",
        "POST /v1/observability/spans/evaluations/search",
        "POST /v1/observability/spans/evaluations/search/latest",
        "GET /v1/observability/traces/{trace_id}",
        "GET /v1/observability/traces/{trace_id}/spans",
        "GET /v1/observability/traces/{trace_id}/spans/{span_id}",
    ),
    "connector locale examples fail their enums": (
        "GET /v1/connectors",
        "POST /v1/connectors",
        "GET /v1/connectors/{connector_id_or_name}#idOrName",
        "PATCH /v1/connectors/{connector_id}#id",
    ),
    "workflow examples miss required span fields, minItems or duration formats": (
        "GET /v1/workflows/executions/{execution_id}/trace/summary",
        "GET /v1/workflows/{workflow_name}/metrics",
        "GET /v1/workflows/schedules",
        "GET /v1/workflows/schedules/{schedule_id}",
    ),
}
EXAMPLE_INVALID = {key: reason for reason, keys in _EXAMPLE_INVALID.items() for key in keys}


def _violations(answer: Answer) -> list[dict[str, Any]]:
    """Prism's findings about an answer it did not mock.

    They are in its problem body, or in ``sl-violations`` when it served the spec's own
    error example (where a long list starts "Too many violations! [...").
    """
    data = json.loads(answer.body) if answer.problem_type() else {}
    found = data.get("validation") if isinstance(data, dict) else None
    if found is None:
        header = answer.header("sl-violations") or ""
        try:
            found = json.loads(header[header.find("[") :])
        except ValueError:
            found = []
    return found if isinstance(found, list) else []


def prism_rejection(call: SpecCall, direct: Answer) -> str | None:
    """What is wrong with Prism's answer to ``call``'s direct request, if anything.

    A 2xx mock is right, unless the operation is listed as one Prism cannot mock (the list
    went stale); a listed operation must get the answer its list says, for its reason.
    """
    listed = (*REJECTED_BY_PRISM, *SSE_NOT_MOCKED, *EXAMPLE_INVALID)
    if 200 <= direct.status < 300:
        return "Prism mocks it now: take it off its list" if call.key in listed else None
    problem = direct.problem_type()
    if call.key in REJECTED_BY_PRISM and direct.status == 422:
        if any("stream" in v.get("location", []) for v in _violations(direct)):
            return None
    elif call.key in SSE_NOT_MOCKED and problem.endswith("#NO_COMPLEX_OBJECT_TEXT"):
        return None
    elif call.key in EXAMPLE_INVALID and problem.endswith("#VIOLATIONS"):
        locations = [v.get("location", [""])[0] for v in _violations(direct)]
        if locations and all(where == "response" for where in locations):
            return None
    return f"Prism answered the direct request {direct.status} {direct.body[:300]!r}"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="module")
def prism(spec: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrismMock]:
    with PrismMock(spec, tmp_path_factory.mktemp("prism")) as mock:
        yield mock


@pytest.fixture(scope="module")
def prism_gateway(prism: PrismMock, start_gateway: GatewayFactory) -> GatewayProcess:
    """One gateway with a master key, Prism as its Mistral."""
    return start_gateway(
        {
            "MISTRAL_API_BASE": prism.url,
            "MISTRAL_API_KEY": PROVIDER_KEY,
            "PASSGATE_MASTER_KEY": MASTER_KEY,
        }
    )


def test_calls_cover_every_operation_of_the_spec(spec: dict[str, Any]) -> None:
    operations = {
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method in METHODS
        if method in item
    }
    keys = {call.key.removesuffix(" (stream)") for call in spec_calls(spec)}
    assert len(operations) == SPEC_OPERATIONS
    assert keys == operations
    listed = {*REJECTED_BY_PRISM, *GATEWAY_SENDS_BEARER, *EXAMPLE_INVALID, *SSE_NOT_MOCKED}
    assert listed <= {call.key for call in spec_calls(spec)}


def test_every_operation_answers_the_same_through_the_gateway(
    spec: dict[str, Any], prism: PrismMock, prism_gateway: GatewayProcess
) -> None:
    started = time.monotonic()
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    calls = list(spec_calls(spec))
    to_prism, to_gateway = Client(prism.url), Client(prism_gateway.url)
    master = ("Authorization", f"Bearer {MASTER_KEY}")
    for call in calls:
        direct = to_prism.send(call.target, call, call.credential(PROVIDER_KEY))
        relayed = to_gateway.send("/mistral" + call.target, call, master)
        if call.key in GATEWAY_SENDS_BEARER:
            seen = (direct.status, relayed.status)
            outcomes["x-api-key scheme"] += 1
            if seen != GATEWAY_SENDS_BEARER[call.key]:
                problems.append(f"{call.key}: listed as {GATEWAY_SENDS_BEARER[call.key]}, {seen}")
            continue
        rejection = prism_rejection(call, direct)
        if rejection is not None:
            problems.append(f"{call.key}: {rejection}")
        if 200 <= direct.status < 300 and relayed.status == 422:
            problems.append(f"{call.key}: Prism rejected the request the gateway forwarded")
        problems += [f"{call.key}: {d}" for d in differences(direct, relayed)]
        outcomes[_outcome(call, direct)] += 1
    to_prism.close()
    to_gateway.close()
    elapsed = time.monotonic() - started
    print(f"{len(calls)} calls for {SPEC_OPERATIONS} operations in {elapsed:.1f} s: {outcomes}")
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems)


def _outcome(call: SpecCall, direct: Answer) -> str:
    if 200 <= direct.status < 300:
        return "mocked"
    if call.key in REJECTED_BY_PRISM:
        return "stream alias 422"
    if call.key in SSE_NOT_MOCKED:
        return "SSE not mockable"
    return "example invalid"
