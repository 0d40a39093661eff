"""Reading request bodies: what is inspected, what streams, and that nothing is altered."""

from __future__ import annotations

import asyncio

import pytest

from passgate.errors import GatewayError
from passgate.exchange import Exchange
from passgate.proxy.body import Body, BodyPolicy, ClientGone, read_body
from passgate.types import Message, Receive

UNKNOWN = -1  # what the relay passes when the request is chunked


def exchange() -> Exchange:
    return Exchange("r", "POST", "/mistral/v1/x", "/v1/x", "mistral", 0.0, 0.0)


def client(chunks: list[bytes], disconnect: bool = False) -> Receive:
    """An ASGI receive callable delivering ``chunks``, then a disconnect when asked."""
    messages: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or disconnect}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages.append({"type": "http.disconnect"})

    async def receive() -> Message:
        return messages.pop(0)

    return receive


async def collect(body: Body) -> bytes:
    if isinstance(body, bytes):
        return body
    return b"".join([chunk async for chunk in body])


def run(
    chunks: list[bytes],
    length: int,
    ctype: bytes | None = b"application/json",
    policy: BodyPolicy | None = None,
    want_model: bool = True,
) -> tuple[Exchange, Body, bytes]:
    ex = exchange()
    policy = policy or BodyPolicy(max_bytes=10_000, inspect_bytes=100)

    async def go() -> tuple[Body, bytes]:
        body = await read_body(ex, client(chunks), ctype, length, policy, want_model)
        return body, await collect(body)

    body, data = asyncio.run(go())
    return ex, body, data


def test_a_chunked_json_body_within_the_inspection_limit_is_read_for_its_model() -> None:
    ex, body, data = run([b'{"model": ', b'"mistral-small-latest",', b' "max_tokens": 5}'], UNKNOWN)
    assert isinstance(body, bytes)
    assert data == b'{"model": "mistral-small-latest", "max_tokens": 5}'
    assert ex.info.model == "mistral-small-latest" and ex.info.max_tokens == 5
    assert ex.bytes_in == len(data)


def test_a_chunked_body_beyond_the_inspection_limit_streams_unchanged() -> None:
    chunks = [b"{" + b"x" * 60, b"y" * 60, b"z" * 60, b"}"]
    ex, body, data = run(chunks, UNKNOWN)
    assert not isinstance(body, bytes)
    assert data == b"".join(chunks)
    assert ex.info.model is None
    assert ex.bytes_in == len(data)


def test_a_known_large_body_streams_from_the_first_chunk() -> None:
    chunks = [b"a" * 90, b"b" * 90]
    _ex, body, data = run(chunks, 180)
    assert not isinstance(body, bytes)
    assert data == b"".join(chunks)


def test_a_chunked_body_over_the_size_limit_is_refused() -> None:
    policy = BodyPolicy(max_bytes=150, inspect_bytes=100)
    with pytest.raises(GatewayError) as err:
        run([b"a" * 80, b"b" * 80, b"c" * 80], UNKNOWN, policy=policy)
    assert err.value.status == 413


def test_a_multipart_model_field_is_found_in_a_chunked_upload() -> None:
    boundary = b"XyZ"
    head = (
        b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nvoxtral-mini\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
    )
    chunks = [head, b"\0" * 120, b"\0" * 120, b"\r\n--XyZ--\r\n"]
    ex, _body, data = run(chunks, UNKNOWN, ctype=b"multipart/form-data; boundary=" + boundary)
    assert data == b"".join(chunks)
    assert ex.info.model == "voxtral-mini"


def test_a_client_leaving_while_the_body_is_read_is_noticed() -> None:
    receive = client([b'{"model": '], disconnect=True)
    policy = BodyPolicy(max_bytes=10_000, inspect_bytes=100)
    with pytest.raises(ClientGone):
        asyncio.run(read_body(exchange(), receive, b"application/json", UNKNOWN, policy, True))
