"""Which way a call to an upstream leaves: straight there, or through an HTTP egress proxy.

The proxy comes from ``PASSGATE_UPSTREAM_PROXY`` when it is set (for every upstream,
whatever ``NO_PROXY`` says: it is this deployment's explicit choice), else from the
environment as curl and httpx read it: ``https_proxy`` for https upstreams,
``http_proxy`` for http ones, ``all_proxy`` for both, each lowercase first then
uppercase, and ``no_proxy`` naming the hosts that go direct. Reading the variables and
matching ``no_proxy`` is the standard library's (``urllib.request``), so the rules are
the ones Python's own clients follow.

Only ``http://`` proxies are spoken to (the tunnel itself carries TLS end to end).
Credentials in the proxy URL become a ``Proxy-Authorization: Basic`` header; they are
kept out of ``repr``, and ``shown`` is the only form that may be printed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

# public since Python 2, though typeshed does not declare it
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]


class ProxySettingError(ValueError):
    """A proxy URL cannot be used; the message names where it came from, never its secret."""


@dataclass(frozen=True, slots=True)
class EgressProxy:
    """An HTTP proxy: where it listens, and the header that authenticates to it."""

    host: str
    port: int
    authorization: bytes | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The proxy as it may appear in a log line: no credentials."""
        return f"http://{_authority(self.host, self.port)}"

    def connect_request(self, host: str, port: int) -> bytes:
        """The ``CONNECT`` request that opens a tunnel to ``host:port``."""
        target = _authority(host, port).encode("ascii")
        head = b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n"
        if self.authorization is not None:
            head += b"Proxy-Authorization: " + self.authorization + b"\r\n"
        return head + b"\r\n"


def parse_proxy(url: str, source: str) -> EgressProxy:
    """The proxy ``url`` names (``source`` says which setting, for the error message)."""
    # curl and httpx take a bare host:port as http://host:port
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme.lower() != "http":
        raise ProxySettingError(
            f"{source}: only http:// proxies are supported, not {parts.scheme}://"
        )
    try:
        host, port = parts.hostname, parts.port or 80
    except ValueError:
        raise ProxySettingError(f"{source}: the proxy URL has an invalid port") from None
    if not host:
        raise ProxySettingError(f"{source}: the proxy URL has no host")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = b"Basic " + base64.b64encode(credentials.encode("utf-8"))
    return EgressProxy(host, port, authorization)


class EgressRoutes:
    """The proxy (or None: direct) for each upstream origin, decided once per origin."""

    __slots__ = ("_environment", "_override")

    def __init__(self, override: str | None, environment: Mapping[str, str]) -> None:
        """``environment`` as ``urllib.request.getproxies_environment`` returns it."""
        self._override = (
            parse_proxy(override, "PASSGATE_UPSTREAM_PROXY") if override is not None else None
        )
        # Variables are parsed only for an upstream that uses them: an ALL_PROXY of
        # socks5:// meant for other programs does not stop passgate.
        self._environment = dict(environment)

    def proxy_for(self, scheme: str, host: str, port: int) -> EgressProxy | None:
        """The proxy a call to ``scheme://host:port`` goes through, or None to go direct.

        Raises ``ProxySettingError`` when that proxy's URL cannot be used.
        """
        if self._override is not None:
            return self._override
        env = self._environment
        url = env.get(scheme) or env.get("all")
        if not url or proxy_bypass_environment(_authority(host, port), env):
            return None
        return parse_proxy(url, f"{scheme if env.get(scheme) else 'all'}_proxy")


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
