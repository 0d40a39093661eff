"""What passgate checks and says at start about its networks, and a tunnel a proxy garbles."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from passgate.config import Settings
from passgate.listen_tls import MODERN_CIPHERS, uvicorn_tls_options
from passgate.proxy.egress import EgressProxy
from passgate.proxy.tunnel import EgressProxyError, open_tunnel
from passgate.runtime.networks import network_refusal, start_notes, upstream_route
from tests.support.certs import TestCA


def test_plain_http_beyond_loopback_is_told_to_use_tls(tmp_path: Path) -> None:
    [note] = start_notes(Settings(), "0.0.0.0", loopback=False)
    assert "0.0.0.0" in note and "TLS-terminating proxy" in note
    assert start_notes(Settings(), "127.0.0.1", loopback=True) == []
    ca = TestCA(tmp_path)
    cert = ca.issue("server", server=True)
    tls = Settings(ssl_certfile=cert.cert, ssl_keyfile=cert.key)
    assert start_notes(tls, "0.0.0.0", loopback=False) == []
    assert uvicorn_tls_options(tls) == {
        "ssl_certfile": str(cert.cert),
        "ssl_keyfile": str(cert.key),
        "ssl_ciphers": MODERN_CIPHERS,
    }
    assert uvicorn_tls_options(Settings()) == {}


def test_verification_off_is_announced_at_every_start() -> None:
    [banner] = start_notes(Settings(upstream_tls_verify=False), "127.0.0.1", loopback=True)
    assert "NOT verified" in banner


def test_files_that_do_not_load_are_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert network_refusal(Settings()) is None
    refusal = network_refusal(Settings(upstream_ca_bundle=junk))
    assert refusal is not None and refusal.startswith("PASSGATE_UPSTREAM_CA_BUNDLE: cannot load")
    refusal = network_refusal(Settings(upstream_client_cert=junk))
    assert refusal is not None and refusal.startswith("PASSGATE_UPSTREAM_CLIENT_CERT: cannot load")
    refusal = network_refusal(Settings(ssl_certfile=tmp_path / "missing.pem"))
    assert refusal is not None and refusal.startswith("PASSGATE_SSL_CERTFILE: cannot load")
    refusal = network_refusal(Settings(upstream_proxy="socks5://u:secret@p:1"))  # type: ignore[arg-type]
    assert refusal is not None and "secret" not in refusal


def test_a_key_without_its_certificate_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"upstream_client_key\n.*_UPSTREAM_CLIENT_CERT too"):
        Settings(upstream_client_key=Path("key.pem"))
    with pytest.raises(ValidationError, match=r"ssl_keyfile\n.*set PASSGATE_SSL_CERTFILE too"):
        Settings(ssl_keyfile=Path("key.pem"))


def test_the_start_line_names_the_proxy_without_credentials() -> None:
    settings = Settings(upstream_proxy="http://user:secret@corp:3128")  # type: ignore[arg-type]
    assert (
        upstream_route(settings)
        == "upstream /mistral -> https://api.mistral.ai via egress proxy http://corp:3128"
    )
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "answer to CONNECT is not HTTP"),
        (b"", "closed the connection before answering CONNECT"),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 407 No\r\nContent-Length: 0\r\n\r\n",
            "status 407",
        ),
    ],
)
async def test_a_proxy_that_does_not_open_the_tunnel(answer: bytes, message: str) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(EgressProxyError, match=message):
            await open_tunnel(
                asyncio.get_running_loop(), EgressProxy("127.0.0.1", port), "upstream", 443
            )
    finally:
        server.close()
        await server.wait_closed()
