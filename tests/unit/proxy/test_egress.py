"""Choosing the egress proxy: the environment as curl and httpx read it, the override, NO_PROXY."""

from __future__ import annotations

import base64

import pytest

from passgate.config import proxy_environment
from passgate.proxy.egress import EgressProxy, EgressRoutes, ProxySettingError, parse_proxy

ENV = {"https": "http://tls-proxy:3128", "http": "http://plain-proxy:8080"}


def _via(routes: EgressRoutes, scheme: str, host: str, port: int) -> str | None:
    proxy = routes.proxy_for(scheme, host, port)
    return None if proxy is None else proxy.shown


def test_each_scheme_uses_its_own_variable_and_all_proxy_is_the_fallback() -> None:
    routes = EgressRoutes(None, ENV)
    assert _via(routes, "https", "api.mistral.ai", 443) == "http://tls-proxy:3128"
    assert _via(routes, "http", "vllm.internal", 80) == "http://plain-proxy:8080"
    only_all = EgressRoutes(None, {"all": "http://everything:1"})
    assert _via(only_all, "https", "api.mistral.ai", 443) == "http://everything:1"
    assert _via(EgressRoutes(None, {"http": "http://p:1"}), "https", "a.b", 443) is None
    assert _via(EgressRoutes(None, {}), "https", "api.mistral.ai", 443) is None


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypassed"),
    [
        ("api.mistral.ai", "api.mistral.ai", True),
        ("mistral.ai", "api.mistral.ai", True),  # a domain covers its subdomains
        (".mistral.ai", "api.mistral.ai", True),
        ("mistral.ai", "notmistral.ai", False),
        ("example.org, 127.0.0.1", "127.0.0.1", True),
        ("api.mistral.ai:443", "api.mistral.ai", True),
        ("api.mistral.ai:8443", "api.mistral.ai", False),
        ("*", "anything.example", True),
        ("", "api.mistral.ai", False),
    ],
)
def test_no_proxy_matches_as_curl_and_httpx_do(no_proxy: str, host: str, bypassed: bool) -> None:
    routes = EgressRoutes(None, {**ENV, "no": no_proxy})
    assert (_via(routes, "https", host, 443) is None) is bypassed


def test_the_override_beats_the_environment_and_no_proxy() -> None:
    routes = EgressRoutes("http://corp:3128", {**ENV, "no": "*"})
    assert _via(routes, "https", "api.mistral.ai", 443) == "http://corp:3128"
    assert _via(routes, "http", "vllm.internal", 80) == "http://corp:3128"


def test_lowercase_variables_win_as_in_curl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("https_proxy", "http://lower:2")
    monkeypatch.setenv("NO_PROXY", "internal")
    monkeypatch.delenv("no_proxy", raising=False)
    environment = proxy_environment()
    assert environment["https"] == "http://lower:2"
    assert environment["no"] == "internal"


def test_credentials_become_basic_auth_and_are_never_shown() -> None:
    proxy = parse_proxy("http://us%40er:p%3Ass%20w@proxy.corp:3128", "HTTPS_PROXY")
    assert proxy.authorization == b"Basic " + base64.b64encode(b"us@er:p:ss w")
    assert proxy.shown == "http://proxy.corp:3128"
    assert "p%3Ass" not in repr(proxy)
    assert "authorization" not in repr(proxy)
    head = proxy.connect_request("api.mistral.ai", 443)
    assert head == (
        b"CONNECT api.mistral.ai:443 HTTP/1.1\r\nHost: api.mistral.ai:443\r\n"
        b"Proxy-Authorization: " + proxy.authorization + b"\r\n\r\n"
    )


def test_a_bare_host_and_port_is_an_http_proxy_and_ipv6_is_bracketed() -> None:
    assert parse_proxy("proxy.corp:3128", "x") == EgressProxy("proxy.corp", 3128)
    assert parse_proxy("http://proxy.corp", "x").port == 80
    proxy = parse_proxy("http://[::1]:3128", "x")
    assert proxy.shown == "http://[::1]:3128"
    assert proxy.connect_request("::1", 443).startswith(b"CONNECT [::1]:443 HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("socks5://user:secret@proxy:1080", "only http:// proxies are supported, not socks5://"),
        ("https://user:secret@proxy:443", "only http:// proxies are supported, not https://"),
        ("http://user:secret@proxy:99999", "invalid port"),
        ("http://user:secret@:3128", "no host"),
    ],
)
def test_an_unusable_proxy_is_refused_without_its_secret(url: str, message: str) -> None:
    routes = EgressRoutes(None, {"https": url})  # parsed when an upstream needs it
    with pytest.raises(ProxySettingError, match=message) as caught:
        routes.proxy_for("https", "api.mistral.ai", 443)
    assert str(caught.value).startswith("https_proxy: ")
    assert "secret" not in str(caught.value)
    with pytest.raises(ProxySettingError, match="PASSGATE_UPSTREAM_PROXY: "):
        EgressRoutes(url, {})


def test_a_socks_all_proxy_for_other_programs_does_not_matter_here() -> None:
    routes = EgressRoutes(None, {"all": "socks5://localhost:1080", "https": "http://p:3128"})
    assert _via(routes, "https", "api.mistral.ai", 443) == "http://p:3128"
    with pytest.raises(ProxySettingError, match=r"^all_proxy: only http://"):
        routes.proxy_for("http", "vllm.internal", 80)
