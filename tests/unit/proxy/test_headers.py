from passgate.providers.mistral import MistralSpec
from passgate.proxy.headers import (
    client_response_headers,
    not_forwarded,
    upstream_request_headers,
)


def test_request_headers_drop_hop_by_hop_credentials_and_control() -> None:
    raw = [
        (b"host", b"gateway:4000"),
        (b"authorization", b"Bearer sk-secret"),
        (b"x-api-key", b"sk-secret"),
        (b"api-key", b"sk-secret"),
        (b"connection", b"keep-alive, X-Custom-Hop"),
        (b"x-custom-hop", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"te", b"trailers"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"proxy-authorization", b"Basic x"),
        (b"x-passgate-tags", b"a,b"),
        (b"x-end-user-id", b"alice"),
        (b"content-length", b"12"),
        (b"content-type", b"application/json"),
        (b"accept", b"text/event-stream"),
        (b"x-trace", b"abc"),
    ]
    caller_keys = MistralSpec.caller_key_headers  # x-api-key, api-key
    out = upstream_request_headers(
        raw, ("Authorization", "Bearer provider-key"), not_forwarded(caller_keys)
    )
    assert out == [
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("x-trace", "abc"),
        ("Authorization", "Bearer provider-key"),
    ]


def test_response_headers_keep_upstream_and_add_request_id() -> None:
    raw = (
        (b"Content-Type", b"text/event-stream"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Connection", b"keep-alive"),
        (b"X-Request-Id", b"up-1"),
        (b"Content-Encoding", b"gzip"),
        (b"Content-Length", b"42"),
    )
    headers, upstream_id, ctype, length, encoding = client_response_headers(raw, b"gw-1")
    assert headers == [
        (b"content-type", b"text/event-stream"),
        (b"x-upstream-request-id", b"up-1"),
        (b"content-encoding", b"gzip"),
        (b"content-length", b"42"),
        (b"x-request-id", b"gw-1"),
    ]
    assert upstream_id == b"up-1"
    assert ctype == b"text/event-stream"
    assert length == 42
    assert encoding == b"gzip"


def test_request_fields_named_by_connection_are_dropped_wherever_they_come() -> None:
    raw = [
        (b"x-before", b"1"),
        (b"connection", b"X-Before"),
        (b"connection", b"x-after"),
        (b"x-after", b"2"),
        (b"x-kept", b"3"),
    ]
    assert upstream_request_headers(raw, None) == [("x-kept", "3")]


def test_response_fields_named_by_connection_are_dropped_and_not_read() -> None:
    raw = (
        (b"Content-Type", b"application/json"),
        (b"X-Hop", b"1"),
        (b"Content-Length", b"7"),
        (b"Connection", b"x-hop, Content-Length"),
        (b"X-Kept", b"2"),
    )
    headers, _, ctype, length, _ = client_response_headers(raw, b"gw-1")
    assert headers == [
        (b"content-type", b"application/json"),
        (b"x-kept", b"2"),
        (b"x-request-id", b"gw-1"),
    ]
    assert ctype == b"application/json"
    assert length is None


def test_a_connection_header_of_plain_tokens_names_no_field() -> None:
    for value in (b"keep-alive", b" Keep-Alive ", b"close", b"CLOSE"):
        raw = ((b"Connection", value), (b"Keep-Alive", b"timeout=5"), (b"X-Kept", b"1"))
        headers, *_ = client_response_headers(raw, b"gw-1")
        assert headers == [(b"x-kept", b"1"), (b"x-request-id", b"gw-1")], value
    raw = ((b"Connection", b"keep-alive , x-hop"), (b"X-Hop", b"1"), (b"X-Kept", b"2"))
    headers, *_ = client_response_headers(raw, b"gw-1")
    assert headers == [(b"x-kept", b"2"), (b"x-request-id", b"gw-1")]
