"""What ``passgate`` checks and says about its networks at start.

The checks load every TLS file and parse every proxy URL once, in the command, so that
a bad setting stops ``passgate`` with one line naming it instead of failing in each
worker. The notes are the lines printed at every start: the upstream's route, a loud
banner when upstream verification is off, and a recommendation of TLS when serving
plain HTTP beyond loopback.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from passgate.config import Settings, proxy_environment
from passgate.listen_tls import serves_tls
from passgate.providers.registry import enabled
from passgate.proxy.egress import EgressRoutes, ProxySettingError
from passgate.proxy.tls import TlsSettingError, UpstreamTls, upstream_tls_context

BANNER_NO_VERIFY = (
    "\n!!! PASSGATE_UPSTREAM_TLS_VERIFY=false: upstream certificates are NOT verified.\n"
    "!!! Anyone on the path to the upstream can read the provider key and every call.\n"
    "!!! Trust a private CA with PASSGATE_UPSTREAM_CA_BUNDLE instead.\n"
)


def egress_routes(settings: Settings) -> EgressRoutes:
    """The egress routes the workers will use (this process's environment)."""
    override = settings.upstream_proxy
    return EgressRoutes(
        override.get_secret_value() if override is not None else None, proxy_environment()
    )


def network_refusal(settings: Settings) -> str | None:
    """Why the network settings cannot be used (a file that does not load, a bad proxy
    URL), or None."""
    try:
        upstream_tls_context(UpstreamTls.from_settings(settings))
        upstream_route(settings)  # parses the proxy the upstream will use
    except (TlsSettingError, ProxySettingError) as exc:
        return str(exc)
    if settings.ssl_certfile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        keyfile = settings.ssl_keyfile
        try:
            context.load_cert_chain(settings.ssl_certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            what = f"{settings.ssl_certfile}" + (f" with {keyfile}" if keyfile else "")
            reason = exc.reason if isinstance(exc, ssl.SSLError) else exc.strerror
            return f"PASSGATE_SSL_CERTFILE: cannot load {what}: {reason or type(exc).__name__}"
    return None


def upstream_route(settings: Settings) -> str:
    """Each served provider's upstream and the way to it, as the start line shows it (no
    credentials): ``upstream /mistral -> https://api.mistral.ai``, one per provider."""
    routes = egress_routes(settings)
    shown = []
    for provider in enabled(settings.upstreams(), settings.provider_specs()):
        parts = urlsplit(provider.origin)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy = routes.proxy_for(parts.scheme, parts.hostname or "", port)
        via = f" via egress proxy {proxy.shown}" if proxy is not None else ""
        url = provider.origin + provider.base_path.decode()
        shown.append(f"{provider.spec.prefix.decode()} -> {url}{via}")
    return "upstream " + ", ".join(shown)


def start_notes(settings: Settings, host: str, loopback: bool) -> list[str]:
    """The warnings printed at every start about these settings' networks."""
    notes = []
    if not settings.upstream_tls_verify:
        notes.append(BANNER_NO_VERIFY)
    if not loopback and not serves_tls(settings):
        notes.append(
            f"passgate: serving plain HTTP on {host}: keys cross the network in clear; "
            "serve HTTPS (--ssl-certfile/--ssl-keyfile) or put a TLS-terminating proxy in front"
        )
    return notes
