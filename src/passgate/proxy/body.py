"""Reading the request body: whole when small, streamed when large, never re-encoded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from passgate.errors import GatewayError, too_large
from passgate.exchange import Exchange
from passgate.proxy.inspect import MultipartFields, boundary_of, inspect_json
from passgate.types import Receive

Body = bytes | AsyncIterator[bytes]
BODY_TOO_LARGE = "request body too large"  # ex.error when a streamed body passed the limit


class ClientGone(Exception):
    """The client disconnected while its body was being read."""


@dataclass(slots=True)
class BodyPolicy:
    """Limits for one app: the largest body, and how much may be read to inspect it."""

    max_bytes: int
    inspect_bytes: int


def _too_large(limit: int) -> GatewayError:
    return too_large(f"request body exceeds the gateway's limit of {limit} bytes")


def _inspect_whole(ex: Exchange, body: bytes, content_type: bytes | None, limit: int) -> None:
    if not body or len(body) > limit:
        return
    ctype = content_type or b""
    # find, not ``in``: on CPython 3.11 ``bytes in bytes`` costs twice as much
    if ctype.find(b"json") >= 0 or (not ctype and body[:1] in (b"{", b"[")):
        ex.info = inspect_json(body)
        return
    boundary = boundary_of(ctype)
    if boundary is not None:
        fields = MultipartFields(boundary)
        fields.feed(body)
        ex.info = fields.info()


async def read_body(
    ex: Exchange,
    receive: Receive,
    content_type: bytes | None,
    content_length: int,
    policy: BodyPolicy,
    want_model: bool,
) -> Body:
    """Read the body as far as needed, fill ``ex.info``, and return what to send upstream.

    Small bodies (up to ``inspect_bytes``) are read whole and inspected. A large
    multipart body is read only until its ``model`` field when ``want_model`` (a
    model allowlist must be checked before anything goes upstream); any other
    large body streams through untouched.
    """
    if content_length > policy.max_bytes:
        raise _too_large(policy.max_bytes)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    first: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(first) > policy.max_bytes:
            raise _too_large(policy.max_bytes)
        ex.bytes_in = len(first)
        _inspect_whole(ex, first, content_type, policy.inspect_bytes)
        return first
    if content_length <= policy.inspect_bytes:
        # Known and small, or unknown (chunked): read up to the inspection limit.
        # A chunked body that ends within it is inspected like any small body;
        # a longer one streams on, its first part already read.
        whole = bytearray(first)
        more = True
        while more and len(whole) <= policy.inspect_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            whole += message.get("body", b"")
            more = message.get("more_body", False)
            if len(whole) > policy.max_bytes:
                raise _too_large(policy.max_bytes)
        if not more:
            body = bytes(whole)
            ex.bytes_in = len(body)
            _inspect_whole(ex, body, content_type, policy.inspect_bytes)
            return body
        first = bytes(whole)
    prefix = [first]
    ex.bytes_in = len(first)
    boundary = boundary_of(content_type or b"")
    if boundary is not None and want_model:
        fields = MultipartFields(boundary)
        fields.feed(first)
        more = True
        while more and fields.model is None and not fields.failed:
            if ex.bytes_in > policy.inspect_bytes:
                break
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            ex.bytes_in += len(chunk)
            fields.feed(chunk)
            prefix.append(chunk)
        ex.info = fields.info()
        if not more:
            return b"".join(prefix)
    return _stream(ex, prefix, receive, policy.max_bytes)


async def _stream(
    ex: Exchange, prefix: list[bytes], receive: Receive, limit: int
) -> AsyncIterator[bytes]:
    for chunk in prefix:
        if chunk:
            yield chunk
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        ex.bytes_in += len(chunk)
        if ex.bytes_in > limit:
            ex.error = BODY_TOO_LARGE
            raise _too_large(limit)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
