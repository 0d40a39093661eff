"""The TLS context for upstream connections: the system's trust store, plus what settings add.

One context serves every upstream connection (direct or through a proxy's tunnel):
OpenSSL's defaults, SNI and hostname verification; extra trusted CAs from
``upstream_ca_bundle`` (added to the system store, not replacing it); a client
certificate for upstreams that demand one. Verification is off only when
``upstream_tls_verify`` is false, which ``passgate`` announces loudly at every start.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from passgate.config import Settings


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """What the upstream TLS context adds to OpenSSL's defaults."""

    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> UpstreamTls:
        """The upstream TLS options ``settings`` set."""
        return cls(
            ca_bundle=settings.upstream_ca_bundle,
            client_cert=settings.upstream_client_cert,
            client_key=settings.upstream_client_key,
            verify=settings.upstream_tls_verify,
        )


class TlsSettingError(ValueError):
    """A TLS file setting cannot be loaded; the message names the setting and the file."""


def upstream_tls_context(tls: UpstreamTls) -> ssl.SSLContext:
    """The client context for https upstreams described by ``tls``."""
    context = ssl.create_default_context()
    bundle = tls.ca_bundle
    if bundle is not None:
        try:
            context.load_verify_locations(cafile=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise TlsSettingError(
                f"PASSGATE_UPSTREAM_CA_BUNDLE: cannot load {bundle}: {_reason(exc)}"
            ) from None
    cert, key = tls.client_cert, tls.client_key
    if cert is not None:
        try:
            context.load_cert_chain(str(cert), str(key) if key is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSettingError(
                f"PASSGATE_UPSTREAM_CLIENT_CERT: cannot load {cert}"
                f"{f' with {key}' if key is not None else ''}: {_reason(exc)}"
            ) from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or type(exc).__name__)
    return exc.strerror or type(exc).__name__
