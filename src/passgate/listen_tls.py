"""How uvicorn serves HTTPS for passgate: the certificate settings and a modern cipher policy.

Kept apart from ``passgate.runtime.networks`` so that the server's supervisor process, which
only starts uvicorn, imports nothing of the upstream client.
"""

from __future__ import annotations

from typing import Any

from passgate.config import Settings

# TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3's are all of that and are
# not set by this string). uvicorn's own default, "TLSv1", would allow CBC and RSA key
# exchange; with this list no TLS 1.0 or 1.1 handshake can succeed either.
MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def serves_tls(settings: Settings) -> bool:
    """Whether the gateway serves HTTPS (a web UI's cookies are ``Secure`` then)."""
    return settings.ssl_certfile is not None


def uvicorn_tls_options(settings: Settings) -> dict[str, Any]:
    """The ``uvicorn.run`` options that serve HTTPS, or none for plain HTTP."""
    if settings.ssl_certfile is None:
        return {}
    return {
        "ssl_certfile": str(settings.ssl_certfile),
        "ssl_keyfile": str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        "ssl_ciphers": MODERN_CIPHERS,
    }
