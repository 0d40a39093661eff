"""Which headers cross the gateway, in each direction (RFC 9110 §7.6.1)."""

from __future__ import annotations

from passgate.types import RawHeaders

# Hop-by-hop fields, plus the ones the gateway always sets itself upstream
# (Host from the upstream URL, Content-Length from the body it sends).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_DROP_REQUEST = _HOP_BY_HOP | {b"host", b"content-length", b"expect"}
# The caller's credential for the gateway (a provider may name more headers); the
# provider's credential replaces it.
_CREDENTIALS = frozenset({b"authorization"})
# Gateway control headers: read by passgate, never forwarded.
_CONTROL_PREFIXES = (b"x-passgate-", b"x-litellm-", b"proxy-")
_CONTROL = frozenset({b"x-end-user-id"})
# Every request field never forwarded by name: one set look-up per header.
_NOT_FORWARDED = _DROP_REQUEST | _CREDENTIALS | _CONTROL


def not_forwarded(caller_key_headers: tuple[bytes, ...] = ()) -> frozenset[bytes]:
    """The request fields never forwarded by name, with a provider's caller-key headers."""
    return _NOT_FORWARDED | frozenset(caller_key_headers)


# Connection tokens that name no field (or only ones dropped anyway): "keep-alive" comes
# on nearly every answer, and ignoring it spares a second pass over the headers.
_PLAIN_TOKENS = _HOP_BY_HOP | {b"close"}
# Response fields the relay reads or replaces, each with what to do with it; any other
# field goes to the client as it is (lowercased), unless it starts with "proxy-".
_DROP, _UPSTREAM_ID, _CONNECTION, _TYPE, _LENGTH, _ENCODING, _CORRELATION = range(7)
_RESPONSE_FIELDS = {
    **dict.fromkeys(_HOP_BY_HOP, _DROP),
    b"connection": _CONNECTION,
    b"x-request-id": _UPSTREAM_ID,
    b"content-type": _TYPE,
    b"content-length": _LENGTH,
    b"content-encoding": _ENCODING,
}


_NO_TOKENS: frozenset[bytes] = frozenset()


def _connection_tokens(value: bytes) -> frozenset[bytes]:
    """The fields a Connection header names, less those that are hop-by-hop anyway."""
    if value.strip().lower() in _PLAIN_TOKENS:  # "keep-alive", "close": one look-up
        return _NO_TOKENS
    return frozenset(t.strip().lower() for t in value.split(b",")) - _PLAIN_TOKENS


def upstream_request_headers(
    headers: RawHeaders,
    credential: tuple[str, str] | None,
    dropped: frozenset[bytes] = _NOT_FORWARDED,
) -> list[tuple[str, str]]:
    """Client headers to send upstream: no hop-by-hop, no caller credentials, the provider's.

    ``headers`` are an ASGI scope's, whose names the server has lowercased (the relay
    reads them that way too).
    """
    # One pass: a Connection header naming a field is rare, so those fields are taken
    # out after the loop instead of in a first pass over every header of every call.
    named: frozenset[bytes] = frozenset()
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if name in dropped or name.startswith(_CONTROL_PREFIXES):
            if name == b"connection":
                named |= _connection_tokens(value)
            continue
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    if named:
        out = [pair for pair in out if pair[0].encode("latin-1") not in named]
    if credential is not None:
        out.append(credential)
    return out


def response_fields(correlation_headers: tuple[bytes, ...]) -> dict[bytes, int]:
    """The response fields the relay reads, with a provider's correlation headers (which
    name the upstream's request id when it sends no ``x-request-id``)."""
    return {**_RESPONSE_FIELDS, **dict.fromkeys(correlation_headers, _CORRELATION)}


def client_response_headers(
    raw: tuple[tuple[bytes, bytes], ...],
    request_id: bytes,
    fields: dict[bytes, int] = _RESPONSE_FIELDS,
) -> tuple[RawHeaders, bytes | None, bytes, int | None, bytes | None]:
    """Upstream response headers for the client, plus what the relay needs from them.

    Returns the headers, the upstream's own request id, the content type, the
    content length and the content encoding. The gateway's ``x-request-id``
    replaces the upstream's, which is kept as ``x-upstream-request-id``.
    """
    named: frozenset[bytes] = frozenset()
    out: RawHeaders = []
    upstream_id: bytes | None = None
    correlation_id: bytes | None = None
    content_type = b""
    length: int | None = None
    encoding: bytes | None = None
    for name, value in raw:
        lower = name.lower()
        action = fields.get(lower)
        if action is None:
            if not lower.startswith(b"proxy-"):
                out.append((lower, value))
            continue
        if action == _DROP:
            continue
        if action == _CONNECTION:
            named |= _connection_tokens(value)
            continue
        if action == _UPSTREAM_ID:
            upstream_id = value
            out.append((b"x-upstream-request-id", value))
            continue
        if action == _TYPE:
            content_type = value
        elif action == _LENGTH:
            length = int(value)
        elif action == _ENCODING:
            encoding = value
        elif action == _CORRELATION:
            correlation_id = value
        out.append((lower, value))
    if named:
        out = [pair for pair in out if pair[0] not in named]
        # the fields a Connection header names are the hop's: they tell the relay nothing
        content_type = content_type if b"content-type" not in named else b""
        length = length if b"content-length" not in named else None
        encoding = encoding if b"content-encoding" not in named else None
    out.append((b"x-request-id", request_id))
    return out, upstream_id or correlation_id, content_type, length, encoding
